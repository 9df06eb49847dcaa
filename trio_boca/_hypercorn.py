"""hypercorn, as one more ASGI server that runs a trio_boca App, unpatched.

`trio-boca run --server hypercorn` and `LiveServer(app, plain=True)` use
this: hypercorn's Trio worker with trio_boca's defaults (no access log of
its own, its messages through standard logging, a graceful timeout), the
proxy headers of trusted peers only, and TLS from a certificate and key or a
context. Under hypercorn a trio_boca App is a plain ASGI app: docs/serving.md
has the table of what hypercorn does not give (the client's close code,
write deadlines, a keepalive with a deadline, compression you choose...).
"""

from __future__ import annotations

import logging
import ssl
from functools import partial
from typing import Any

import trio
from hypercorn.config import Config
from hypercorn.trio import serve as hypercorn_serve

from ._errors import leaves
from .server import Address, ProxyHeaders, StartupFailed, require_asgi, until_cancelled

logger = logging.getLogger("trio_boca")


class TLSConfig(Config):
    """hypercorn's `Config`, which can also serve TLS with a given context."""

    #: The context to serve TLS with; None: hypercorn's, from certfile and keyfile.
    ssl_context: ssl.SSLContext | None = None

    @property
    def ssl_enabled(self) -> bool:
        return self.ssl_context is not None or super().ssl_enabled

    def create_ssl_context(self) -> ssl.SSLContext | None:
        if self.ssl_context is not None:
            return self.ssl_context
        return super().create_ssl_context()


def make_config(host: str, port: int, shutdown_timeout: float, **settings: Any) -> TLSConfig:
    """hypercorn's configuration with trio_boca's defaults.

    Extra keyword arguments set `Config` attributes (`certfile` and
    `keyfile` for TLS, `graceful_timeout`, say).
    """
    config = TLSConfig()
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
    config: Config,
    *,
    proxy_headers: bool | ProxyHeaders = False,
    forwarded_allow_ips: str = "127.0.0.1,::1",
    task_status: trio.TaskStatus[Address] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve `app` with hypercorn until cancelled, then stop as hypercorn does
    (within its `graceful_timeout`; open WebSockets get no close frame).
    Raises `StartupFailed` if the app's startup fails."""
    require_asgi(app)
    from hypercorn.utils import LifespanFailureError

    try:
        await until_cancelled(
            _run,
            app,
            config,
            proxy_headers=proxy_headers,
            forwarded_allow_ips=forwarded_allow_ips,
            task_status=task_status,
        )
    except BaseException as exc:
        for leaf in leaves(exc):
            if isinstance(leaf, LifespanFailureError):
                raise StartupFailed(str(leaf)) from None
        raise


async def _run(
    app: Any, config: Config, stopping: trio.Event, *, task_status: trio.TaskStatus[Address]
) -> None:
    # Shielded: the caller's cancellation becomes hypercorn's own graceful
    # stop (bounded by its graceful_timeout) rather than tearing it down,
    # which would skip the app's shutdown hooks.
    with trio.CancelScope(shield=True):
        async with trio.open_nursery() as nursery:
            bound: list[str] = await nursery.start(
                partial(hypercorn_serve, app, config, shutdown_trigger=stopping.wait)
            )
            task_status.started(Address.from_bind(bound[0]))
