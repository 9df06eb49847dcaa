"""The in-process client behaves like hypercorn where hypercorn is right.

These use raw ASGI apps, so they pin the server's side of the protocol,
not trio_boca's.
"""

from __future__ import annotations

from typing import Any

import pytest
import trio

from trio_boca import WebSocketDisconnect
from trio_boca.testing import TestClient

from .conftest import TIMEOUT, Transport, refused, server_close

Scope = dict[str, Any]


async def ends_without_closing(scope: Scope, receive: Any, send: Any) -> None:
    assert scope["type"] == "websocket"  # no lifespan support, as servers expect
    await receive()
    await send({"type": "websocket.accept"})
    await send({"type": "websocket.send", "text": "bye"})


async def never_answers(scope: Scope, receive: Any, send: Any) -> None:
    assert scope["type"] == "websocket"  # no lifespan support, as servers expect
    await receive()


async def closes_before_accept(scope: Scope, receive: Any, send: Any) -> None:
    assert scope["type"] == "websocket"  # no lifespan support, as servers expect
    await receive()
    await send({"type": "websocket.close"})


async def test_an_app_that_ends_without_closing_is_seen_as_1011(serve: Transport) -> None:
    with trio.fail_after(TIMEOUT):
        async with serve(ends_without_closing) as server, server.websocket("/") as client:
            assert await client.receive() == "bye"
            closed = await server_close(client)
            with pytest.raises(WebSocketDisconnect):
                await client.send("anyone there?")
    assert closed.code == 1011


async def test_a_handshake_left_unanswered_is_http_500(serve: Transport) -> None:
    with trio.fail_after(TIMEOUT):
        async with serve(never_answers) as server:
            rejected = await refused(server, "/")
    assert rejected.status == 500


async def test_close_before_accept_is_http_403(serve: Transport) -> None:
    with trio.fail_after(TIMEOUT):
        async with serve(closes_before_accept) as server:
            rejected = await refused(server, "/")
    assert rejected.status == 403


async def test_a_message_out_of_turn_is_an_error_as_on_a_server() -> None:
    async def sends_too_early(scope: Scope, receive: Any, send: Any) -> None:
        assert scope["type"] == "websocket"
        await receive()
        await send({"type": "websocket.send", "text": "before accept"})

    with trio.fail_after(TIMEOUT):
        async with TestClient(sends_too_early) as client:
            with pytest.raises(RuntimeError, match="not allowed in state HANDSHAKE"):
                async with client.websocket("/"):
                    pass  # pragma: no cover


async def test_lifespan_runs_on_entry_and_exit() -> None:
    events: list[str] = []

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        assert scope["type"] == "lifespan"
        while True:
            message = await receive()
            events.append(message["type"])
            await send({"type": message["type"] + ".complete"})
            if message["type"] == "lifespan.shutdown":
                return

    with trio.fail_after(TIMEOUT):
        async with TestClient(app):
            assert events == ["lifespan.startup"]
    assert events == ["lifespan.startup", "lifespan.shutdown"]


async def test_a_failed_startup_is_raised() -> None:
    async def app(scope: Scope, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "lifespan.startup.failed", "message": "no database"})

    with trio.fail_after(TIMEOUT), pytest.raises(RuntimeError, match="no database"):
        async with TestClient(app):
            pass  # pragma: no cover
