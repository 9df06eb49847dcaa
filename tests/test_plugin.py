"""The pytest plugin's fixtures, used as a user would: with an `app` fixture."""

from __future__ import annotations

import httpx
import pytest
import trio

from examples.echo import app as echo_app
from trio_boca import App
from trio_boca.testing import LiveServer, TestClient

from .conftest import TIMEOUT


@pytest.fixture
def app() -> App:
    return echo_app


async def test_client_fixture(client: TestClient) -> None:
    with trio.fail_after(TIMEOUT):
        assert (await client.get("/")).status_code == 200
        async with client.websocket("/echo") as ws:
            await ws.send("hi")
            assert await ws.receive() == "hi"


async def test_live_server_fixture(live_server: LiveServer) -> None:
    with trio.fail_after(TIMEOUT):
        async with httpx.AsyncClient(base_url=live_server.url) as http:
            assert (await http.get("/")).status_code == 200
        async with live_server.websocket("/echo") as ws:
            await ws.send("hi")
            assert await ws.receive() == "hi"
