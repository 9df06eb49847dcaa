"""One run of the server: its listeners, its connections, its timekeeper, its stop.

Run.serve()
└── the run's nursery
    ├── timekeeper: every deadline of every connection (and keepalive pings)
    ├── an accept loop per listener
    └── a task per connection: HTTPConnection.run(), perhaps a WebSocket
"""

from __future__ import annotations

import errno
import logging
import os
import socket as stdlib_socket
from typing import TYPE_CHECKING, Any

import h11
import trio

from .._ratelimit import OncePerSecond
from ._config import Config
from ._http import HTTPConnection, path_of
from ._timekeeper import Timekeeper
from ._transport import Transport

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from ._websocket import WebSocketConnection

logger = logging.getLogger("trio_boca")

#: What accept() fails with when the process is out of a resource: the
#: listener lives on, and tries again shortly.
_OUT_OF = {errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS}


#: Every scope's `asgi` entry: one dict, the same for all (never written).
_ASGI = {"version": "3.0", "spec_version": "2.4"}


class Run:
    """The state of one `serve()` run, shared by its connections."""

    def __init__(self, app: Any, config: Config, state: dict[str, Any]) -> None:
        self.app = app
        self.config = config
        #: The app's lifespan state: each request's scope gets a copy.
        self.state = state
        self.timekeeper = Timekeeper()
        #: Lines a client can cause: at most one a second of each kind.
        self.notes = OncePerSecond(logger)
        self._failures = OncePerSecond(logger, logging.ERROR)
        self.stopping = False
        self.http: set[HTTPConnection] = set()
        self.websockets: set[WebSocketConnection] = set()
        self._nursery: trio.Nursery | None = None
        self._accepting = trio.CancelScope()
        self._emptied = trio.Event()

    # -- for connections ---------------------------------------------------------

    def spawn(self, function: Callable[[], Awaitable[None]]) -> None:
        """Start a short task of the run's own (a keepalive ping, a closing frame)."""
        assert self._nursery is not None
        self._nursery.start_soon(function)

    def scope(self, kind: str, request: h11.Request, transport: Transport) -> dict[str, Any]:
        """The ASGI scope of a request (`kind`: "http" or "websocket")."""
        path, raw_path, query = path_of(request.target)
        return {
            "type": kind,
            "asgi": _ASGI,
            "http_version": request.http_version.decode("ascii"),
            "scheme": "https" if transport.secure else "http",
            "path": path,
            "raw_path": raw_path,
            "query_string": query,
            "root_path": "",
            "headers": list(request.headers),
            "client": transport.client,
            "server": transport.server,
            "state": dict(self.state),
            "extensions": {},
        }

    # -- serving -------------------------------------------------------------------

    async def serve(
        self, listeners: list[trio.SocketListener], *, task_status: trio.TaskStatus[None]
    ) -> None:
        """Serve until `stop()`, then until the last connection is done."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            nursery.start_soon(self.timekeeper.run)
            for listener in listeners:
                nursery.start_soon(self._accept, listener)
            task_status.started()
            await self._emptied.wait()
            nursery.cancel_scope.cancel()

    async def _accept(self, listener: trio.SocketListener) -> None:
        assert self._nursery is not None
        with self._accepting:
            async with listener:
                while True:
                    try:
                        stream = await listener.accept()
                    except OSError as exc:
                        if exc.errno not in _OUT_OF:
                            raise
                        self.notes.note(
                            "accept",
                            "cannot accept connections: %s (%s); "
                            "open connections go on, new ones wait",
                            errno.errorcode[exc.errno],
                            os.strerror(exc.errno),
                        )
                        await trio.sleep(0.1)
                        continue
                    self._nursery.start_soon(self._connection, stream)

    async def _connection(self, stream: trio.SocketStream) -> None:
        ssl_context = self.config.ssl_context
        served: trio.abc.Stream = stream
        if ssl_context is not None:
            served = trio.SSLStream(stream, ssl_context, server_side=True, https_compatible=True)
        try:
            transport = Transport(served, ssl_context is not None)
        except OSError:  # the client left before we could even ask who it is
            await trio.aclose_forcefully(stream)
            return
        connection = HTTPConnection(self, transport)
        self.http.add(connection)
        self.timekeeper.watch(transport)
        try:
            await connection.run()
        except Exception as exc:
            # A bug of ours, met on one connection: it ends that one alone.
            self._failures.note(
                "connection", "the server failed on a connection; closed it", exc_info=exc
            )
        finally:
            self.timekeeper.forget(transport)
            self.http.discard(connection)
            await transport.aclose()
            if self.stopping and not self.http:
                self._emptied.set()

    def stop(self) -> None:
        """Stop accepting; ask every connection to finish (WebSockets close with 1001)."""
        self.stopping = True
        self._accepting.cancel()
        for websocket in list(self.websockets):
            websocket.shutdown()
        for connection in list(self.http):
            if not connection.busy:  # waiting for a request: nothing to finish
                connection.transport.abort("the server is stopping")
        if not self.http:
            self._emptied.set()

    async def emptied(self) -> None:
        """Wait until every connection is done (after `stop()`)."""
        await self._emptied.wait()

    def cut(self) -> int:
        """Abort every connection still open; how many there were."""
        left = list(self.http)
        for connection in left:
            connection.transport.abort("the server stopped")
        self._emptied.set()
        return len(left)


async def open_listeners(config: Config) -> list[trio.SocketListener]:
    """The listening sockets: bound to host and port, or the inherited `fd`."""
    if config.fd is not None:
        sock = stdlib_socket.socket(fileno=os.dup(config.fd))
        sock.setblocking(False)
        return [trio.SocketListener(trio.socket.from_stdlib_socket(sock))]
    return await trio.open_tcp_listeners(config.port, host=config.host, backlog=config.backlog)
