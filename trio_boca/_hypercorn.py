"""The one place trio_boca reaches into hypercorn.

What hypercorn 0.18 does not give us, and how we stand in for it:

1. **The client's close code and reason.** hypercorn reads the client's close
   frame and answers it, then tells the app 1006 with no reason (hypercorn
   #127). We note the code and reason as hypercorn answers the frame, and
   put them into the `websocket.disconnect` event it sends the app.
2. **A bounded shutdown.** We keep the streams of live connections so
   `serve()` can close them once its shutdown deadline passes.
3. **Oversized messages.** Over `websocket_max_message_size` hypercorn sends
   close 1009, then tells the app nothing and keeps the TCP connection until
   the client drops it (it stops reading frames at the oversized one). We
   end the connection as hypercorn ends one after a client's close frame,
   and hand the app a disconnect with 1009, ended by `bad_input`.
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
   app's accept is dropped, hand the app a disconnect (1002, `bad_input`),
   and end the connection after the 400.
6. **A connection's failure stays with that connection.** Any other error
   hypercorn raises while serving one connection is logged (at most once a
   second) and that connection closed; the server goes on.
7. **Write deadlines.** hypercorn writes with a shielded `send_all`: a client
   that stops reading holds any task that writes to it, for ever (and the
   server past its stop). The app says, in `write_deadline`, by when the
   write under way must be done; hypercorn's stream is wrapped so that a
   write notes its deadline while it lasts, and one task per `serve()` run
   (`Live.reap`) aborts the transport of a write past its deadline, which
   hypercorn then answers as a broken stream, by ending the connection. The
   disconnect the app gets is ended by `write_timeout`. (A cancel scope
   around each write would do the same, at a tenth of the echo throughput.)
8. **Keepalive with a deadline.** hypercorn's `websocket_ping_interval`
   sends pings but never looks for the pongs, so a peer that vanished
   without a FIN (a phone in a tunnel) is never noticed. Our pinger waits
   `ping_timeout` for the pong (hypercorn ignores pong events; we watch for
   them on the wsproto connection), and without one closes with 1011
   "keepalive ping timeout" and ends the connection, ended by `keepalive`.
9. **Compression you choose.** hypercorn accepts permessage-deflate from
   every client that offers it (every browser), with zlib state that is
   kept between messages: about 100 KiB per connection. `compression=False`
   declines it; `True` accepts it without context takeover either way, so
   zlib state lives only while a message is compressed or decompressed.
10. **TLS with a context of the caller's** (`TLSConfig`). hypercorn builds
   its own SSL context, from `certfile` and `keyfile` only; `serve()` may be
   given an `ssl.SSLContext` instead.

All act only in tasks started inside `adapted()`, which only trio_boca's own
entry points enter (a ContextVar marks them): an app served by plain
`hypercorn app:app`, even in the same process, sees hypercorn unchanged
(adaptation 4 is a middleware `serve()` puts in front of the app). They are
installed only on the hypercorn versions they were checked against
(`CHECKED`); tests fail loudly if a new version changes what they rely on.
"""

from __future__ import annotations

import ipaddress
import logging
import math
import os
import ssl
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from importlib.metadata import version
from typing import Any, Literal

import trio
from hypercorn.config import Config

from ._errors import split_errors

logger = logging.getLogger("trio_boca")

CHECKED = ("0.18.",)

#: A key of the `websocket.disconnect` event: why the server ended the
#: connection, as the name of one of the connection's ends ("bad_input",
#: "keepalive", "write_timeout"); absent when the client closed or left.
ENDED_BY = "trio_boca.ended_by"

#: By when the write under way must be done (Trio time), set by the task that
#: writes; None: no deadline (hypercorn's own writes).
write_deadline: ContextVar[float | None] = ContextVar("trio_boca_write_deadline", default=None)

#: How often `Live.reap` looks for writes past their deadline, in seconds.
REAP_EVERY = 0.25


@dataclass
class Live:
    """What one `serve()` run asks of hypercorn, and the streams it has open."""

    #: Seconds to wait for the pong of a keepalive ping; None: no keepalive.
    ping_timeout: float | None = None
    #: Whether to accept permessage-deflate; None: as hypercorn does.
    compression: bool | None = None

    def __post_init__(self) -> None:
        self.streams: set[Any] = set()
        #: The streams with a write under way that has a deadline.
        self.writing: set[_DeadlineStream] = set()

    async def reap(self) -> None:
        """Abort the writes that outlive their deadline, for as long as the run lasts."""
        while True:
            await trio.sleep(REAP_EVERY)
            now = trio.current_time()
            for stream in [s for s in self.writing if s.deadline is not None and now >= s.deadline]:
                await stream.expire()

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
def adapted(live: Live) -> Iterator[Live]:
    """Run hypercorn within this block with the adaptations, where supported."""
    install()
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
                "views see close codes as hypercorn reports them, and writes, keepalive "
                "and compression are as hypercorn has them",
                version("hypercorn"),
                ", ".join(v + "x" for v in CHECKED),
            )
    return _installed


class TLSConfig(Config):
    """hypercorn's `Config`, which can serve TLS with a given context (adaptation 10)."""

    #: The context to serve TLS with; None: hypercorn's, from certfile and keyfile.
    ssl_context: ssl.SSLContext | None = None

    @property
    def ssl_enabled(self) -> bool:
        return self.ssl_context is not None or super().ssl_enabled

    def create_ssl_context(self) -> ssl.SSLContext | None:
        if self.ssl_context is not None:
            return self.ssl_context
        return super().create_ssl_context()


class _DeadlineStream:
    """hypercorn's stream, whose writes note their deadline while they last (adaptation 7)."""

    def __init__(self, stream: Any, server: Any, live: Live) -> None:
        self._stream = stream
        self._server = server
        self._live = live
        #: The deadline of the write under way, if it has one.
        self.deadline: float | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)

    async def send_all(self, data: Any) -> None:
        deadline = write_deadline.get()
        if deadline is None:
            await self._stream.send_all(data)
            return
        # hypercorn holds a lock around each write: one at a time per stream.
        self.deadline = deadline
        self._live.writing.add(self)
        try:
            await self._stream.send_all(data)
        finally:
            self.deadline = None
            self._live.writing.discard(self)

    async def expire(self) -> None:
        """The write under way is past its deadline: end the connection."""
        # Marked before the socket closes: whichever of hypercorn's tasks
        # then tells the app, the disconnect says why.
        websocket = getattr(getattr(self._server.protocol, "protocol", None), "stream", None)
        if websocket is not None:
            reason = "a write did not complete by its deadline"
            websocket.trio_boca_client_close = (1006, reason, "write_timeout")
        self._live.writing.discard(self)
        await trio.aclose_forcefully(self._stream)  # the write fails, as on a broken stream


def _patch() -> None:
    from hypercorn.protocol import ws_stream
    from hypercorn.protocol.events import Body, Data, Request, StreamClosed
    from hypercorn.protocol.ws_stream import ASGIWebsocketState, Handshake, WSStream
    from hypercorn.trio.tcp_server import TCPServer
    from wsproto.connection import ConnectionState
    from wsproto.events import CloseConnection, Ping, Pong
    from wsproto.extensions import PerMessageDeflate
    from wsproto.frame_protocol import CloseReason

    send_wsproto_event = WSStream._send_wsproto_event
    handle = WSStream.handle
    accept = WSStream._accept
    send_pings = WSStream._send_pings
    handshake_accept = Handshake.accept
    run = TCPServer.run

    async def _send_wsproto_event(self: Any, event: Any) -> None:
        closing = _live.get() is not None and isinstance(event, CloseConnection)
        # hypercorn answers a client's close frame with the same code and
        # reason, in state REMOTE_CLOSING: the one moment both are at hand.
        if closing and self.connection.state is ConnectionState.REMOTE_CLOSING:
            self.trio_boca_client_close = (int(event.code), event.reason or "", None)
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
            self.trio_boca_client_close = (1009, reason, "bad_input")
            # As hypercorn ends a connection after the client's close frame.
            await self.send(StreamClosed(stream_id=self.stream_id))

    async def _handle(self: Any, event: Any) -> None:
        early = isinstance(event, (Body, Data)) and not self.closed and not self.handshake.accepted
        if early and _live.get() is not None:
            self.closed = True  # before the 400: the app's accept is dropped from now on
            reason = "data before the handshake was answered"
            self.trio_boca_client_close = (1002, reason, "bad_input")
            await self._send_error_response(400)
            if self.app_put is not None:
                await self.app_put({"type": "websocket.disconnect", "code": 1006})
            await self.send(StreamClosed(stream_id=self.stream_id))  # and end the connection
            return
        await handle(self, event)
        if self.closed and _live.get() is not None:
            _wake(self)  # the pinger must not outlive the stream
        if isinstance(event, Request) and self.app_put is not None and _live.get() is not None:
            put = self.app_put

            async def app_put(message: Any) -> None:
                close = getattr(self, "trio_boca_client_close", None)
                if message["type"] == "websocket.disconnect" and close is not None:
                    code, reason, ended_by = close
                    message = {**message, "code": code, "reason": reason, ENDED_BY: ended_by}
                await put(message)

            self.app_put = app_put

    async def _accept(self: Any, message: Any) -> None:
        await accept(self, message)
        live = _live.get()
        if live is None or not self.config.websocket_ping_interval:
            return
        self.trio_boca_done = trio.Event()  # set when the stream closes: the pinger stops
        if live.ping_timeout:
            # hypercorn ignores pong events; the keepalive needs to see them.
            events = self.connection.events
            self.trio_boca_pong = trio.Event()

            def observed() -> Any:
                for event in events():
                    if isinstance(event, Pong):
                        self.trio_boca_pong.set()
                    yield event

            self.connection.events = observed

    async def _send_pings(self: Any) -> None:
        live = _live.get()
        if live is None:
            await send_pings(self)
            return
        # hypercorn's pinger sleeps a whole interval before it looks at the
        # stream, so the connection's task outlived the socket by up to that.
        timeout = live.ping_timeout
        while True:
            with trio.move_on_after(self.config.websocket_ping_interval):
                await self.trio_boca_done.wait()
            if self.closed:
                return
            pong = self.trio_boca_pong = trio.Event()
            if timeout is not None:
                write_deadline.set(trio.current_time() + timeout)
            await self._send_wsproto_event(Ping(payload=os.urandom(4)))
            if timeout is None:
                continue
            with trio.move_on_after(timeout):
                await pong.wait()  # also set when the stream closes
            if self.closed:
                return
            if not pong.is_set():
                reason = f"no pong within {timeout:g} s of a ping"
                self.trio_boca_client_close = (1006, reason, "keepalive")
                close = CloseConnection(
                    code=CloseReason.INTERNAL_ERROR, reason="keepalive ping timeout"
                )
                write_deadline.set(trio.current_time() + timeout)  # if it still listens
                await self._send_wsproto_event(close)
                await self.send(StreamClosed(stream_id=self.stream_id))
                return

    def _handshake_accept(self: Any, *args: Any) -> Any:
        live = _live.get()
        if live is None or live.compression is None:
            return handshake_accept(self, *args)
        if not live.compression:
            self.extensions = None  # as if the client offered none
            return handshake_accept(self, *args)
        # Synchronous: no other task can see the swap.
        ws_stream.PerMessageDeflate = _bounded_deflate(PerMessageDeflate)  # type: ignore[attr-defined,assignment]
        try:
            return handshake_accept(self, *args)
        finally:
            ws_stream.PerMessageDeflate = PerMessageDeflate  # type: ignore[attr-defined]

    async def _run(self: Any) -> None:
        live = _live.get()
        if live is None:
            await run(self)
            return
        self.stream = _DeadlineStream(self.stream, self, live)
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
    WSStream._accept = _accept  # type: ignore[method-assign]
    WSStream._send_pings = _send_pings  # type: ignore[method-assign]
    Handshake.accept = _handshake_accept  # type: ignore[method-assign,assignment]
    TCPServer.run = _run  # type: ignore[method-assign]


def _wake(stream: Any) -> None:
    """The stream has closed: wake its pinger, whatever it waits for."""
    for name in ("trio_boca_done", "trio_boca_pong"):
        event = getattr(stream, name, None)
        if event is not None:
            event.set()


def _bounded_deflate(deflate: Any) -> Callable[[], Any]:
    def bounded() -> Any:
        return deflate(client_no_context_takeover=True, server_no_context_takeover=True)

    return bounded


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
