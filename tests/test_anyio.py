"""anyio-based libraries beside trio_boca on Trio (docs/anyio.md): httpx and an
anyio task group in views, a Starlette app mounted with its lifespan run by the
App's hooks, and the TestClient under anyio's pytest plugin."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from trio_boca import App, Request, Response
from trio_boca.testing import LiveServer, TestClient

from .conftest import TIMEOUT, Transport

pytest.importorskip("starlette")
pytest.importorskip("anyio")

ROOT = Path(__file__).resolve().parent.parent


@asynccontextmanager
async def forecast_service() -> AsyncIterator[str]:
    """The upstream the example's views ask, over a real socket: its base URL."""
    upstream = App()

    @upstream.route("/forecast/{city}")
    async def forecast(req: Request, res: Response, city: str) -> None:
        if city == "atlantis":
            res.status_code = 404
            res.text = "no such city"
            return
        await trio.sleep(0.2)  # slow enough that asking one by one would show
        res.json = {"city": city, "sky": "clear"}

    async with LiveServer(upstream) as server:
        yield server.url


async def test_httpx_anyio_and_a_mounted_starlette_app(
    serve: Transport, monkeypatch: pytest.MonkeyPatch
) -> None:
    from examples import ecosystem

    with trio.fail_after(TIMEOUT):
        async with forecast_service() as upstream:
            monkeypatch.setenv("UPSTREAM", upstream)
            async with serve(ecosystem.app) as server:
                get = _getter(server)
                assert (await get("/forecast/oslo")).json() == {"city": "oslo", "sky": "clear"}
                failed = await get("/forecast/atlantis")
                assert failed.status_code == 502
                assert "the forecast service failed" in failed.text
                # The mounted Starlette app, its lifespan run by the App's hooks.
                assert (await get("/legacy/")).text == "hello from Starlette"
                async with server.websocket("/legacy/ws") as ws:
                    await ws.send("hi")
                    assert await ws.receive() == "hi"

                async with server.websocket("/ws/forecasts") as ws:
                    cities = ["oslo", "lima", "pune", "nome", "bern"]
                    began = trio.current_time()
                    await ws.send_json(cities)
                    found = await ws.receive_json()
                    took = trio.current_time() - began
                assert found == {city: {"city": city, "sky": "clear"} for city in cities}
                assert took < 0.2 * len(cities) / 2  # fetched at once, in the task group
            client = ecosystem.http
    assert client.is_closed  # the shutdown hook closed it
    assert ecosystem.legacy.state.greeting is None  # and ran Starlette's shutdown


def _getter(server: TestClient | LiveServer) -> Any:
    async def get(path: str) -> Any:
        if isinstance(server, TestClient):
            return await server.get(path)
        async with httpx.AsyncClient(base_url=server.url) as http:
            return await http.get(path)

    return get


def test_the_test_client_under_anyios_pytest_plugin(tmp_path: Path) -> None:
    """examples/testing/test_anyio.py, in a project without trio_mode: anyio's
    plugin runs one test on the trio backend, pytest-trio the other."""
    (tmp_path / "pyproject.toml").write_text(
        '[tool.pytest.ini_options]\nfilterwarnings = ["error"]\n'
    )
    example = ROOT / "examples" / "testing" / "test_anyio.py"
    (tmp_path / "test_anyio.py").write_text(example.read_text())
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rA"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "PASSED test_anyio.py::test_under_anyio" in done.stdout
    assert "PASSED test_anyio.py::test_under_pytest_trio" in done.stdout
    assert "2 passed" in done.stdout
