"""The one place trio_boca reaches into hypercorn.

What hypercorn 0.18 does not give us, and how we stand in for it:

1. **The client's close code and reason.** hypercorn reads the client's close
   frame and answers it, then tells the app 1006 with no reason (hypercorn
   #127). We note the code and reason as hypercorn answers the frame, and
   put them into the `websocket.disconnect` event it sends the app.
2. **A bounded shutdown.** hypercorn writes with a shielded `send_all`, so a
   client that stopped reading can hold its connection, and with it the
   server, past any cancellation. We keep the streams of live connections so
   `serve()` can close them once its shutdown deadline passes: a blocked
   write then fails instead of waiting forever, and the connection ends.
3. **Oversized messages.** Over `websocket_max_message_size` hypercorn sends
   close 1009, then tells the app nothing and keeps the TCP connection until
   the client drops it (it stops reading frames at the oversized one). We
   end the connection as hypercorn ends one after a client's close frame,
   and hand the app a disconnect with 1009 marked as the server's
   (`SERVER_CLOSED`): the client broke a limit, it did not just leave.
4. **Trusted proxies** (`TrustedProxies`). hypercorn's `ProxyFixMiddleware`
   reads `Forwarded` and `X-Forwarded-*` from *any* peer, so a client that
   reaches the app directly could claim any address; and it writes
   `http`/`https` into WebSocket scopes, where ASGI says `ws`/`wss`. We
   apply it to trusted peers only, reading the one family of headers the
   proxy writes (the other could come from the client), with the client's
   host stripped of quotes and port, and the WebSocket scheme mapped.
5. **Frames before the handshake is answered.** hypercorn answers them with
   400 and only then marks the stream closed: an accept from the app in
   between makes h11 fail, and the error takes the whole server down (one
   TCP packet from any client did). And it never tells the app, whose
   connection then waits for ever. We mark the stream closed first, so the
   app's accept is dropped, hand the app a disconnect (1002, the server's),
   and end the connection after the 400.
6. **A connection's failure stays with that connection.** Any other error
   hypercorn raises while serving one connection is logged (at most once a
   second) and that connection closed; the server goes on.

Adaptations 1 to 3, 5 and 6 act only in tasks started inside `adapted()`, which only
trio_boca's own entry points enter (a ContextVar marks them): an app served
by plain `hypercorn app:app`, even in the same process, sees hypercorn
unchanged. They are installed only on the hypercorn versions they were
checked against (`CHECKED`); tests fail loudly if a new version changes what
they rely on.
"""

from __future__ import annotations

import ipaddress
import logging
import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from importlib.metadata import version
from typing import Any, Literal

import trio

from ._errors import split_errors

logger = logging.getLogger("trio_boca")

CHECKED = ("0.18.",)

#: A key of the `websocket.disconnect` event: the server closed the connection
#: because the client broke one of its limits (an oversized message).
SERVER_CLOSED = "trio_boca.server_closed"


class Live:
    """The streams of the connections one `serve()` has open."""

    def __init__(self) -> None:
        self.streams: set[Any] = set()

    async def abort(self) -> int:
        """Close every stream still open; returns how many there were."""
        streams = list(self.streams)
        for stream in streams:
            await trio.aclose_forcefully(stream)
        return len(streams)


_live: ContextVar[Live | None] = ContextVar("trio_boca_hypercorn_live", default=None)
_installed: bool | None = None


def supported() -> bool:
    return version("hypercorn").startswith(CHECKED)


@contextmanager
def adapted() -> Iterator[Live]:
    """Run hypercorn within this block with both adaptations, where supported."""
    install()
    live = Live()
    token = _live.set(live)
    try:
        yield live
    finally:
        _live.reset(token)


def install() -> bool:
    """Install the adaptations once; False if this hypercorn was not checked."""
    global _installed
    if _installed is None:
        _installed = supported()
        if _installed:
            _patch()
        else:
            logger.warning(
                "hypercorn %s is not one trio_boca was checked against (%s): WebSocket "
                "views see close codes as hypercorn reports them, and shutdown waits "
                "for every write to finish",
                version("hypercorn"),
                ", ".join(v + "x" for v in CHECKED),
            )
    return _installed


def _patch() -> None:
    from hypercorn.protocol.events import Body, Data, Request, StreamClosed
    from hypercorn.protocol.ws_stream import ASGIWebsocketState, WSStream
    from hypercorn.trio.tcp_server import TCPServer
    from wsproto.connection import ConnectionState
    from wsproto.events import CloseConnection
    from wsproto.frame_protocol import CloseReason

    send_wsproto_event = WSStream._send_wsproto_event
    handle = WSStream.handle
    run = TCPServer.run

    async def _send_wsproto_event(self: Any, event: Any) -> None:
        closing = _live.get() is not None and isinstance(event, CloseConnection)
        # hypercorn answers a client's close frame with the same code and
        # reason, in state REMOTE_CLOSING: the one moment both are at hand.
        if closing and self.connection.state is ConnectionState.REMOTE_CLOSING:
            self.trio_boca_client_close = (event.code, event.reason or "", False)
        # Its own 1009, while the app has the socket open: a message too big.
        oversized = (
            closing
            and event.code == CloseReason.MESSAGE_TOO_BIG
            and self.state is ASGIWebsocketState.CONNECTED
            and self.connection.state is ConnectionState.OPEN
        )
        await send_wsproto_event(self, event)
        if oversized:
            limit = self.config.websocket_max_message_size
            reason = f"message over max_message_size ({limit})"
            self.trio_boca_client_close = (1009, reason, True)
            # As hypercorn ends a connection after the client's close frame.
            await self.send(StreamClosed(stream_id=self.stream_id))

    async def _handle(self: Any, event: Any) -> None:
        early = isinstance(event, (Body, Data)) and not self.closed and not self.handshake.accepted
        if early and _live.get() is not None:
            self.closed = True  # before the 400: the app's accept is dropped from now on
            self.trio_boca_client_close = (1002, "data before the handshake was answered", True)
            await self._send_error_response(400)
            if self.app_put is not None:
                await self.app_put({"type": "websocket.disconnect", "code": 1006})
            await self.send(StreamClosed(stream_id=self.stream_id))  # and end the connection
            return
        await handle(self, event)
        if isinstance(event, Request) and self.app_put is not None and _live.get() is not None:
            put = self.app_put

            async def app_put(message: Any) -> None:
                close = getattr(self, "trio_boca_client_close", None)
                if message["type"] == "websocket.disconnect" and close is not None:
                    code, reason, by_server = close
                    message = {**message, "code": code, "reason": reason, SERVER_CLOSED: by_server}
                await put(message)

            self.app_put = app_put

    async def _run(self: Any) -> None:
        live = _live.get()
        if live is None:
            await run(self)
            return
        live.streams.add(self.stream)
        try:
            await run(self)
        except BaseException as exc:
            failure, rest = split_errors(exc)
            if failure is not None:
                _log_connection_failure(failure)
                await trio.aclose_forcefully(self.stream)
            if rest is not None:
                raise rest from None
        finally:
            live.streams.discard(self.stream)

    WSStream._send_wsproto_event = _send_wsproto_event  # type: ignore[method-assign]
    WSStream.handle = _handle  # type: ignore[method-assign]
    TCPServer.run = _run  # type: ignore[method-assign]


_last_failure_logged = -math.inf


def _log_connection_failure(failure: BaseException) -> None:
    global _last_failure_logged
    now = time.monotonic()  # not Trio's clock: each run of it has its own offset
    if now - _last_failure_logged >= 1:
        _last_failure_logged = now
        logger.error("hypercorn failed on a connection; closed it", exc_info=failure)


ProxyHeaders = Literal["x-forwarded", "forwarded"]


class TrustedProxies:
    """hypercorn's `ProxyFixMiddleware`, for trusted peers only (adaptation 4).

    From a peer whose address is in `trusted` (addresses or networks, or
    "*" for any), the headers the proxy writes set the client address, the
    scheme and the host: `X-Forwarded-For`, `-Proto` and `-Host`, or with
    `headers="forwarded"` the `Forwarded` header. Only that family is read:
    a proxy passes the other through, and the client could have written it.
    Of several values the last, the one the nearest proxy added, is used.
    From any other peer the headers are ignored, so nobody can claim
    another address.
    """

    def __init__(self, app: Any, trusted: str, headers: ProxyHeaders = "x-forwarded") -> None:
        from hypercorn.middleware import ProxyFixMiddleware

        if headers not in ("x-forwarded", "forwarded"):
            raise ValueError(f"proxy headers are 'x-forwarded' or 'forwarded', not {headers!r}")
        self.app = app
        # hypercorn's "legacy" mode reads X-Forwarded-* only; "modern" reads
        # Forwarded (and X-Forwarded-* where no Forwarded is present).
        mode: Literal["legacy", "modern"] = "legacy" if headers == "x-forwarded" else "modern"
        self.fixed = ProxyFixMiddleware(_forwarded_scope(app), mode=mode, trusted_hops=1)
        self.anyone, self.networks = trusted_peers(trusted)

    def trusts(self, scope: Any) -> bool:
        client = scope.get("client")
        if self.anyone or not client:
            return self.anyone
        try:
            address = ipaddress.ip_address(client[0])
        except ValueError:  # not an IP address (a Unix socket, say)
            return False
        return any(address in network for network in self.networks)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] in ("http", "websocket") and self.trusts(scope):
            await self.fixed(scope, receive, send)
        else:
            await self.app(scope, receive, send)


def trusted_peers(
    text: str,
) -> tuple[bool, list[ipaddress.IPv4Network | ipaddress.IPv6Network]]:
    """Parse "*" or comma-separated addresses and networks; ValueError if malformed."""
    names = [name.strip() for name in text.split(",") if name.strip()]
    networks = []
    for name in names:
        if name != "*":
            try:
                networks.append(ipaddress.ip_network(name, strict=False))
            except ValueError:
                raise ValueError(f"{name!r} is not an IP address or network") from None
    return "*" in names, networks


def _forwarded_scope(app: Any) -> Callable[..., Any]:
    """`app`, seeing what hypercorn's middleware wrote, made regular: a
    lowercase scheme, `ws`/`wss` for a WebSocket, and the client's host
    without the quotes and port `Forwarded: for="198.51.100.7:4711"` carries."""

    async def regular(scope: Any, receive: Any, send: Any) -> None:
        scheme = str(scope.get("scheme", "")).lower()
        if scope["type"] == "websocket":
            scheme = {"http": "ws", "https": "wss"}.get(scheme, scheme)
        client = scope.get("client")
        host = _client_host(str(client[0])) if client else None
        scope = {**scope, "scheme": scheme, "client": None if host is None else (host, 0)}
        await app(scope, receive, send)

    return regular


def _client_host(value: str) -> str:
    value = value.strip().strip('"')
    if value.startswith("["):  # [2001:db8::1]:4711
        return value[1:].partition("]")[0]
    if value.count(":") == 1:  # 198.51.100.7:4711
        return value.partition(":")[0]
    return value
