"""trio_boca's own server: HTTP/1.1 and WebSocket on Trio, for any ASGI 3 app.

    address = await nursery.start(app.serve, "127.0.0.1", 0)

hands back where the server listens once it does. Cancelling the surrounding
scope stops it gracefully, within `shutdown_timeout`:

1. it stops accepting connections, and closes those waiting for a request;
2. every open WebSocket is asked to close: a trio_boca view is cancelled, its
   `finally` blocks run, and its client gets close 1001 "server shutting
   down" (for any other app the server sends that close itself);
3. HTTP requests in flight may finish, until the deadline;
4. at the deadline, what is still open is cut;
5. the app's background tasks are cancelled and its shutdown hooks run.

The wire is handled by well-kept protocol libraries: h11 for HTTP/1.1 and
websockets' Sans-I/O layer for WebSocket frames; this package adds the I/O,
in Trio's idiom, and the rules of a server that faces browsers (see
docs/serving.md). It imports nothing from trio_boca's core: under it, a
trio_boca App is an ASGI app that takes one extension (`_direct.py`).

    serve()
    ├── the app's lifespan (a task)
    └── the run (Run.serve): its nursery
        ├── timekeeper: every deadline of every connection, keepalive pings
        ├── an accept loop per listener
        └── a task per connection (HTTPConnection.run)
            ├── per HTTP request: the app's task; the connection reads the body
            └── or, upgraded (WebSocketConnection.run): the connection task
                reads frames and hands the app its messages; the app's task
                runs the app (for a trio_boca App: the view)
"""

from __future__ import annotations

import inspect
import logging
import ssl
import sys
from dataclasses import dataclass
from functools import partial
from typing import Any

import trio

from .._errors import plain_errors
from ._config import Config
from ._lifespan import Lifespan, StartupFailed
from ._proxy import ProxyHeaders, TrustedProxies, trusted_peers
from ._serving import Run, open_listeners
from ._transport import ClientDisconnected

if sys.version_info < (3, 11):
    from exceptiongroup import BaseExceptionGroup

__all__ = [
    "Address",
    "ClientDisconnected",
    "Config",
    "ProxyHeaders",
    "StartupFailed",
    "require_asgi",
    "serve",
    "trusted_peers",
]

logger = logging.getLogger("trio_boca")

#: Whether `serve()` accepts permessage-deflate unless told. Off: without
#: context takeover (its bounded form) it costs throughput on small messages
#: and gains little on them; see docs/operations.md.
COMPRESSION = False


@dataclass(frozen=True)
class Address:
    """Where a server listens."""

    host: str
    port: int
    #: Served over TLS.
    secure: bool = False

    @property
    def url(self) -> str:
        """The base HTTP URL, e.g. `http://127.0.0.1:8000` (`https://` over TLS)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'https' if self.secure else 'http'}://{host}:{self.port}"

    @property
    def ws_url(self) -> str:
        """The base WebSocket URL, e.g. `ws://127.0.0.1:8000` (`wss://` over TLS)."""
        return "ws" + self.url[len("http") :]

    @classmethod
    def from_bind(cls, bind: str) -> Address:
        """Parse what hypercorn reports: `http://127.0.0.1:8000`, `https://[::1]:8000`."""
        scheme, hostport = bind.split("://", 1)
        host, _, port = hostport.rpartition(":")
        return cls(host.strip("[]"), int(port), scheme == "https")


def require_asgi(app: Any) -> None:
    """Raise `TypeError` unless `app` can be called as `await app(scope, receive, send)`.

    Checked before serving, so that a wrong target (a module attribute that
    is a page's text, say) is one clear error rather than a failure inside
    hypercorn on the first request.
    """
    call = None
    if inspect.isroutine(app) or isinstance(app, partial):
        call = app
    elif callable(app) and not isinstance(app, type):
        call = app.__call__
    try:
        fits = inspect.iscoroutinefunction(call) and bool(
            inspect.signature(call).bind(None, None, None)
        )
    except (TypeError, ValueError):
        fits = False
    if not fits:
        if isinstance(app, type):
            what = f"the class {app.__name__}"
        elif inspect.isroutine(app):
            what = f"the function {getattr(app, '__name__', app)!r}"
        else:
            what = f"a {type(app).__name__}"
        raise TypeError(
            f"{what}, not an ASGI application "
            "(an async callable taking scope, receive, send, such as a trio_boca.App)"
        )


async def serve(
    app: Any,
    host: str = "127.0.0.1",
    port: int = 8000,
    *,
    shutdown_timeout: float = 5.0,
    max_message_size: int | None = None,
    ping_interval: float = 20.0,
    ping_timeout: float = 20.0,
    compression: bool = COMPRESSION,
    proxy_headers: bool | ProxyHeaders = False,
    forwarded_allow_ips: str = "127.0.0.1,::1",
    ssl_context: ssl.SSLContext | None = None,
    idle_timeout: float = Config.idle_timeout,
    fd: int | None = None,
    task_status: trio.TaskStatus[Address] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve `app` until cancelled, then stop gracefully (see the module docs).

    `max_message_size` bounds one WebSocket message, in bytes (16 MiB unless
    set): a bigger one closes its connection with 1009. Every
    `ping_interval` seconds of silence a WebSocket client is pinged, and one
    still silent `ping_timeout` seconds later is closed with 1011 (0 turns
    either off). `compression` accepts permessage-deflate, without context
    takeover so that an idle connection keeps no zlib state; False declines
    it. With `proxy_headers`, the `X-Forwarded-For`/`-Proto`/`-Host` headers
    (or, with `proxy_headers="forwarded"`, the `Forwarded` header) from the
    peers in `forwarded_allow_ips` (addresses or networks, comma-separated,
    or "*") set the client address, the scheme and the host; from other
    peers they are ignored. With `ssl_context` it serves TLS (`https://`,
    `wss://`). A connection silent for `idle_timeout` seconds while a
    request is due, or slower than that to send a request's head, is
    closed. With `fd` it serves on that inherited listening socket instead
    of binding `host` and `port`.

    Raises `StartupFailed` if the app's startup hooks fail, `OSError` if the
    address cannot be bound, `TypeError` if `app` is not an ASGI
    application, and `ValueError` for an option out of range.
    """
    require_asgi(app)
    for name, value in (("ping_interval", ping_interval), ("ping_timeout", ping_timeout)):
        if value < 0:
            raise ValueError(f"{name} must be 0 (off) or more")
    if max_message_size is not None and max_message_size < 1:
        raise ValueError("max_message_size must be at least 1 byte")
    if idle_timeout <= 0 or shutdown_timeout < 0:
        raise ValueError("idle_timeout must be more than 0, and shutdown_timeout 0 or more")
    config = Config(
        host=host,
        port=port,
        fd=fd,
        ssl_context=ssl_context,
        shutdown_timeout=shutdown_timeout,
        idle_timeout=idle_timeout,
        max_message_size=max_message_size or Config.max_message_size,
        ping_interval=ping_interval,
        ping_timeout=ping_timeout,
        compression=compression,
    )
    try:
        await until_cancelled(
            _run,
            app,
            config,
            proxy_headers=proxy_headers,
            forwarded_allow_ips=forwarded_allow_ips,
            task_status=task_status,
        )
    except BaseExceptionGroup as group:
        with plain_errors():
            raise group from None


async def until_cancelled(
    runner: Any,
    app: Any,
    config: Any,
    *,
    proxy_headers: bool | ProxyHeaders,
    forwarded_allow_ips: str,
    task_status: trio.TaskStatus[Address],
) -> None:
    """Start `runner(app, config, stopping)` (behind the trusted proxies, if
    asked), report the address it started on, and serve until cancelled.

    The caller's cancellation only sets `stopping`: the runner, which shields
    itself, stops gracefully on that cue. Shared by trio_boca's server and
    hypercorn's (`_hypercorn.serve`).
    """
    if proxy_headers:
        headers: ProxyHeaders = "x-forwarded" if proxy_headers is True else proxy_headers
        app = TrustedProxies(app, forwarded_allow_ips, headers)
    stopping = trio.Event()
    async with trio.open_nursery() as nursery:
        try:
            address = await nursery.start(runner, app, config, stopping)
            task_status.started(address)
            await trio.sleep_forever()
        finally:
            stopping.set()


async def _run(
    app: Any, config: Config, stopping: trio.Event, *, task_status: trio.TaskStatus[Address]
) -> None:
    # Shielded: the caller's cancellation becomes a graceful stop, which
    # needs time, instead of tearing connections down mid-message.
    with trio.CancelScope(shield=True):
        async with trio.open_nursery() as nursery:
            lifespan = Lifespan(app)
            await lifespan.startup(nursery)
            try:
                listeners = await open_listeners(config)
                run = Run(app, config, lifespan.state)
                async with trio.open_nursery() as serving:
                    await serving.start(run.serve, listeners)
                    host, port = listeners[0].socket.getsockname()[:2]
                    address = Address(host, port, config.ssl_context is not None)
                    logger.debug("serving on %s", address.url)
                    task_status.started(address)
                    await stopping.wait()
                    logger.info(
                        "stopping: closing connections within %.1f s", config.shutdown_timeout
                    )
                    run.stop()
                    with trio.move_on_after(config.shutdown_timeout):
                        await run.emptied()
                    cut = run.cut()
                    if cut:
                        logger.warning("closed %d connections still open at the deadline", cut)
            finally:
                with trio.move_on_after(config.shutdown_timeout):
                    await lifespan.shutdown()
