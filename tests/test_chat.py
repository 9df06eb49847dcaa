"""The chat example: rooms, names, notices; and two server processes on one Redis."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio

from examples.chat.app import app
from trio_boca.testing import ClientWebSocket, TestClient, connect_websocket

from .conftest import TIMEOUT, Transport, refused
from .services import RedisServer, free_port


async def next_of(client: ClientWebSocket, kind: str) -> dict[str, Any]:
    """The next message of `kind` (notices from earlier joins may come first)."""
    while True:
        message: dict[str, Any] = await client.receive_json()
        if message["type"] == kind:
            return message


async def test_two_people_in_a_room(serve: Transport) -> None:
    with trio.fail_after(TIMEOUT):
        async with serve(app) as server, server.websocket("/ws/lobby?name=alice") as alice:
            assert await next_of(alice, "join") == {"type": "join", "name": "alice"}
            async with server.websocket("/ws/lobby?name=bob") as bob:
                assert (await next_of(alice, "join"))["name"] == "bob"
                await bob.send_json({"text": "hi alice"})
                said = await next_of(alice, "message")
                assert said == {"type": "message", "name": "bob", "text": "hi alice"}
                assert await next_of(bob, "message") == said  # the room includes you
            assert await next_of(alice, "leave") == {"type": "leave", "name": "bob"}


async def test_rooms_are_separate_and_a_name_is_required(serve: Transport) -> None:
    with trio.fail_after(TIMEOUT):
        async with serve(app) as server:
            nameless = await refused(server, "/ws/lobby")
            async with (
                server.websocket("/ws/red?name=ann") as red,
                server.websocket("/ws/blue?name=ben") as blue,
            ):
                await blue.send_json({"text": "blue only"})
                assert (await next_of(blue, "message"))["text"] == "blue only"
                await red.send_json({"text": "red only"})
                assert (await next_of(red, "message"))["text"] == "red only"
                with trio.move_on_after(0.2):
                    message = await next_of(red, "message")
                    pytest.fail(f"red heard {message}")
    assert (nameless.status, nameless.body) == (400, b"a name is required: /ws/{room}?name=...")


@asynccontextmanager
async def chat_process(redis_url: str) -> AsyncIterator[str]:
    """examples.chat.app served by `trio-boca run` in its own process."""
    port = free_port()
    environment = {**os.environ, "CHAT_BROADCAST": redis_url}
    process = await trio.lowlevel.open_process(
        [sys.executable, "-m", "trio_boca", "run", "examples.chat.app:app", "--port", str(port)],
        env=environment,
        stdout=subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        await process.stdout.receive_some(4096)  # "trio-boca: serving ..."
        yield f"ws://127.0.0.1:{port}"
    finally:
        process.send_signal(signal.SIGTERM)
        assert await process.wait() == 0


async def test_a_message_crosses_processes_through_redis() -> None:
    redis = RedisServer()
    redis.start()
    try:
        with trio.fail_after(TIMEOUT * 2):
            async with (
                chat_process(redis.url) as a,
                chat_process(redis.url) as b,
                connect_websocket(f"{a}/ws/lobby?name=alice") as alice,
            ):
                await next_of(alice, "join")
                async with connect_websocket(f"{b}/ws/lobby?name=bob") as bob:
                    assert (await next_of(alice, "join"))["name"] == "bob"
                    await bob.send_json({"text": "from process B"})
                    said = await next_of(alice, "message")
                assert said == {"type": "message", "name": "bob", "text": "from process B"}
                assert (await next_of(alice, "leave"))["name"] == "bob"
    finally:
        redis.stop()


async def test_the_page_fits_a_phone_and_its_icon_is_served() -> None:
    with trio.fail_after(TIMEOUT):
        async with TestClient(app) as client:
            page = await client.get("/")
            icon = await client.get("/favicon.ico")
            # The page names its icon, served from its static files: the same picture.
            named = re.search(r'<link rel="icon" [^>]*href="([^"]+)"', page.text)
            assert named is not None
            linked = await client.get(named[1])
    assert page.status_code == 200
    assert '<meta name="viewport" content="width=device-width, initial-scale=1' in page.text
    assert (icon.status_code, icon.headers["content-type"]) == (200, "image/svg+xml")
    assert (linked.status_code, linked.content) == (200, icon.content)
    assert linked.headers["content-type"].startswith("image/svg+xml")
