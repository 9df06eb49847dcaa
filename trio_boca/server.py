"""Serving an app with hypercorn's Trio worker, inside any Trio program.

    address = await nursery.start(app.serve, "127.0.0.1", 0)

hands back where the server listens once it does. Cancelling the surrounding
scope stops it gracefully, within `shutdown_timeout`:

1. it stops accepting connections;
2. every open WebSocket view is cancelled, its `finally` blocks run, and its
   client gets close 1001 "server shutting down";
3. HTTP requests in flight may finish, until the deadline;
4. the app's background tasks are cancelled and its shutdown hooks run.

A client that stopped reading cannot hold the server past the deadline: its
connection is then closed under it.
"""

from __future__ import annotations

import inspect
import logging
import math
import ssl
import sys
import time
from dataclasses import dataclass
from functools import partial
from typing import Any

import trio
from hypercorn.config import Config
from hypercorn.trio import serve as hypercorn_serve

from . import _hypercorn
from ._connection import Connections
from ._connection import current as current_connections
from ._errors import leaves, plain_errors

if sys.version_info < (3, 11):
    from exceptiongroup import BaseExceptionGroup

logger = logging.getLogger("trio_boca")

#: Whether `serve()` accepts permessage-deflate unless told. Off: without
#: context takeover (its bounded form) it costs about a tenth of the throughput
#: on small messages and gains little on them; see docs/operations.md.
COMPRESSION = False


class AcceptTrouble(logging.Filter):
    """What accept() fails with when the process is out of file descriptors
    (or memory), said once a second with a count, not once a try.

    Trio's `serve_listeners`, under hypercorn, survives EMFILE by sleeping
    and trying again, and logs each try at ERROR with a traceback: about
    ten a second, for as long as the limit holds. This filter takes those
    records off its logger and says, at most once a second, what is wrong
    and how often it happened. Installed by `serve()`.
    """

    EVERY = 1.0

    def __init__(self) -> None:
        super().__init__()
        self._since = -math.inf  # when the last line was written (monotonic)
        self._unsaid = 0

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.getMessage().startswith("accept returned "):
            return True
        self._unsaid += 1
        now = time.monotonic()  # not Trio's clock: it outlives any one run
        if now - self._since >= self.EVERY:
            what = record.args[:2] if isinstance(record.args, tuple) else ("an error", "")
            logger.warning(
                "cannot accept connections: %s (%s), %d time%s since the last report; "
                "open connections go on, new ones wait",
                *what,
                self._unsaid,
                "" if self._unsaid == 1 else "s",
            )
            self._since, self._unsaid = now, 0
        return False


_accept_trouble = AcceptTrouble()


class StartupFailed(Exception):
    """The app's startup hooks failed; the server did not start."""


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


def make_config(host: str, port: int, shutdown_timeout: float, **settings: Any) -> Config:
    """hypercorn's configuration with trio_boca's defaults.

    Extra keyword arguments set `Config` attributes (`certfile` and
    `keyfile` for TLS, say).
    """
    config = _hypercorn.TLSConfig()
    config.bind = [f"[{host}]:{port}" if ":" in host else f"{host}:{port}"]
    config.graceful_timeout = shutdown_timeout
    config.shutdown_timeout = shutdown_timeout  # for the app's shutdown hooks
    config.accesslog = None
    # hypercorn's messages go through standard logging, configured (or not) by
    # the program; given a logger, hypercorn adds no handler of its own.
    config.errorlog = logging.getLogger("hypercorn.error")
    for name, value in settings.items():
        setattr(config, name, value)
    return config


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
    proxy_headers: bool | _hypercorn.ProxyHeaders = False,
    forwarded_allow_ips: str = "127.0.0.1,::1",
    ssl_context: ssl.SSLContext | None = None,
    config: Config | None = None,
    task_status: trio.TaskStatus[Address] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve `app` until cancelled, then stop gracefully (see the module docs).

    `max_message_size` bounds one WebSocket message, in bytes (hypercorn's
    `websocket_max_message_size`, 16 MiB unless set): a bigger one closes
    its connection with 1009 (for text, it counts characters). Every
    `ping_interval` seconds a WebSocket client is pinged, and one that sends
    no pong within `ping_timeout` is closed with 1011 (0 turns either off).
    `compression` accepts permessage-deflate, without context takeover so
    that an idle connection keeps no zlib state; False declines it. With
    `proxy_headers`, the `X-Forwarded-For`/`-Proto`/`-Host` headers (or, with
    `proxy_headers="forwarded"`, the `Forwarded` header) from the peers in
    `forwarded_allow_ips` (addresses or networks, comma-separated, or "*")
    set the client address, the scheme and the host; from other peers they
    are ignored. With `ssl_context` it serves TLS (`https://`, `wss://`).
    `config` replaces the hypercorn configuration built from
    `host`, `port` and `shutdown_timeout`. Raises `StartupFailed` if the
    app's startup hooks fail, `OSError` if the address cannot be bound,
    `TypeError` if `app` is not an ASGI application, and `ValueError` for an
    option out of range.
    """
    require_asgi(app)
    logging.getLogger("trio.serve_listeners").addFilter(_accept_trouble)  # once: a set
    config = config or make_config(host, port, shutdown_timeout)
    if ssl_context is not None:
        if not isinstance(config, _hypercorn.TLSConfig):
            raise ValueError(
                "ssl_context needs a config from make_config(); "
                "or set certfile and keyfile on yours"
            )
        config.ssl_context = ssl_context
    for name, value in (("ping_interval", ping_interval), ("ping_timeout", ping_timeout)):
        if value < 0:
            raise ValueError(f"{name} must be 0 (off) or more")
    config.websocket_ping_interval = ping_interval or None
    live = _hypercorn.Live(ping_timeout=ping_timeout or None, compression=compression)
    if max_message_size is not None:
        if max_message_size < 1:
            raise ValueError("max_message_size must be at least 1 byte")
        config.websocket_max_message_size = max_message_size
    if proxy_headers:
        headers = "x-forwarded" if proxy_headers is True else proxy_headers
        served = _hypercorn.TrustedProxies(app, forwarded_allow_ips, headers)
    else:
        served = app
    stopping = trio.Event()
    try:
        async with trio.open_nursery() as nursery:
            try:
                address = await nursery.start(
                    _run, app, served, config, live, stopping, shutdown_timeout
                )
                task_status.started(address)
                await trio.sleep_forever()
            finally:
                stopping.set()
    except BaseExceptionGroup as group:
        _raise_plainly(group)


async def _run(
    app: Any,
    served: Any,
    config: Config,
    live: _hypercorn.Live,
    stopping: trio.Event,
    shutdown_timeout: float,
    *,
    task_status: trio.TaskStatus[Address],
) -> None:
    # Shielded: the caller's cancellation must become a graceful stop, not
    # tear hypercorn down mid-flight (which skips the app's shutdown hooks).
    connections = Connections()
    token = current_connections.set(connections)
    with trio.CancelScope(shield=True), _hypercorn.adapted(live):

        async def stop_when_asked() -> None:
            await stopping.wait()
            logger.info("stopping: closing connections within %.1f s", shutdown_timeout)
            connections.go_away()
            await trio.sleep(shutdown_timeout)
            aborted = await live.abort()
            if aborted:
                logger.warning("closed %d connections still open at the deadline", aborted)

        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(stop_when_asked)
                nursery.start_soon(live.reap)
                async with trio.open_nursery() as server:
                    run = partial(hypercorn_serve, served, config, shutdown_trigger=stopping.wait)
                    bound: list[str] = await server.start(run)
                    if getattr(app, "startup_failed", False):
                        # hypercorn binds even when startup failed (it only waits
                        # for the lifespan task to end); its error is on the way.
                        await trio.sleep_forever()
                    address = Address.from_bind(bound[0])
                    logger.debug("serving on %s", address.url)
                    task_status.started(address)
                # hypercorn has finished: nothing is left to stop.
                nursery.cancel_scope.cancel()
        except BaseExceptionGroup as group:
            _raise_plainly(group)
        finally:
            current_connections.reset(token)


def _raise_plainly(group: BaseExceptionGroup[BaseException]) -> None:
    """Re-raise what hypercorn's nurseries wrapped, as the one error it is."""
    from hypercorn.utils import LifespanFailureError

    for leaf in leaves(group):
        if isinstance(leaf, LifespanFailureError):
            raise StartupFailed(str(leaf)) from None
    with plain_errors():
        raise group
