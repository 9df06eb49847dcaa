"""`App`: route declarations and the ASGI entry point."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from dataclasses import dataclass
from typing import Any, TypeVar

from ._connection import Limits, Receive, Send, run_connection
from ._inbox import Inbox
from .routing import Router
from .websockets import (
    DEFAULT_CAUGHT_CLOSE_CODES,
    MESSAGE_TYPES,
    MessageType,
    WebSocket,
)

Scope = MutableMapping[str, Any]
View = TypeVar("View", bound=Callable[..., Awaitable[None]])

#: Scope extension a test client sets to have view exceptions re-raised to it
#: (after they are logged and the client got 1011 or 500). Real servers never
#: set it, so an exception is logged once, by us, and not again by the server.
RAISE_EXCEPTIONS = "trio_boca.raise_server_exceptions"


@dataclass(frozen=True)
class WebSocketRoute:
    view: Callable[..., Awaitable[None]]
    auto_accept: bool
    receive_type: MessageType
    send_type: MessageType
    caught_close_codes: frozenset[int]


class App:
    """A trio_boca application: a plain ASGI 3 callable.

    The keyword arguments bound what one WebSocket connection may hold and
    how long its edges may take; the defaults suit most servers. See the
    "Backpressure and limits" section of the docs.
    """

    def __init__(
        self,
        *,
        inbox_messages: int = Limits.inbox_messages,
        inbox_bytes: int = Limits.inbox_bytes,
        stall_timeout: float = Limits.stall_timeout,
        disconnect_grace: float = Limits.disconnect_grace,
        close_timeout: float = Limits.close_timeout,
    ) -> None:
        if inbox_messages < 1 or inbox_bytes < 1:
            raise ValueError("inbox_messages and inbox_bytes must be at least 1")
        self.limits = Limits(
            inbox_messages, inbox_bytes, stall_timeout, disconnect_grace, close_timeout
        )
        self.websocket_routes: Router[WebSocketRoute] = Router("WebSocket")

    def websocket_route(
        self,
        pattern: str,
        *,
        auto_accept: bool = True,
        value_type: MessageType | None = None,
        receive_type: MessageType | None = None,
        send_type: MessageType | None = None,
        caught_close_codes: Iterable[int] | None = None,
    ) -> Callable[[View], View]:
        """Declare a WebSocket view for `pattern`, e.g. `"/chat/{room}"`.

        `value_type` sets both `receive_type` and `send_type` (and wins over
        them); each defaults to `"text"`. `caught_close_codes` are the client
        close codes that end a view quietly; the default is
        `DEFAULT_CAUGHT_CLOSE_CODES` (1000, 1001, 1005, 1006).
        """
        for name, kind in (
            ("value_type", value_type),
            ("receive_type", receive_type),
            ("send_type", send_type),
        ):
            if kind is not None and kind not in MESSAGE_TYPES:
                raise ValueError(f"{name}={kind!r} is not a message type (one of {MESSAGE_TYPES})")
        codes = DEFAULT_CAUGHT_CLOSE_CODES if caught_close_codes is None else caught_close_codes

        def register(view: View) -> View:
            if not _is_async(view):
                raise TypeError(
                    f"WebSocket view {getattr(view, '__name__', view)!r} must be an async function"
                )
            route = WebSocketRoute(
                view,
                auto_accept,
                value_type or receive_type or "text",
                value_type or send_type or "text",
                frozenset(codes),
            )
            self.websocket_routes.add(pattern, route)
            return view

        return register

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "websocket":
            await self._websocket(scope, receive, send)
        elif kind == "http":
            await _not_found(send)
        elif kind == "lifespan":
            await _lifespan(receive, send)

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (await receive())["type"] != "websocket.connect":
            return  # the client left before the handshake began
        found = self.websocket_routes.match(scope["path"])
        if found is None:
            await _refuse_unknown_path(scope, send)
            return
        route, params = found
        scope["path_params"] = params
        limits = self.limits
        ws = WebSocket(
            scope,
            Inbox(limits.inbox_messages, limits.inbox_bytes),
            send,
            receive_type=route.receive_type,
            send_type=route.send_type,
            caught_close_codes=route.caught_close_codes,
            close_timeout=limits.close_timeout,
        )

        async def view() -> None:
            await route.view(ws, **params)

        failure = await run_connection(
            ws, receive, view, auto_accept=route.auto_accept, limits=limits
        )
        if failure is not None and scope.get("extensions", {}).get(RAISE_EXCEPTIONS):
            raise failure


def _is_async(view: object) -> bool:
    return inspect.iscoroutinefunction(view) or inspect.iscoroutinefunction(
        getattr(view, "__call__", None)  # noqa: B004 - a callable object's method
    )


async def _refuse_unknown_path(scope: Scope, send: Send) -> None:
    if "websocket.http.response" in scope.get("extensions", {}):
        body = b"Not Found"
        headers = [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", b"9")]
        await send({"type": "websocket.http.response.start", "status": 404, "headers": headers})
        await send({"type": "websocket.http.response.body", "body": body})
    else:
        await send({"type": "websocket.close", "code": 1000, "reason": ""})


async def _not_found(send: Send) -> None:
    headers = [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", b"9")]
    await send({"type": "http.response.start", "status": 404, "headers": headers})
    await send({"type": "http.response.body", "body": b"Not Found"})


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
