"""HTTP views, in-process and over a real socket (httpx)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, MutableMapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import httpx
import pytest
import trio

from trio_boca import App, HTTPError, Request, Response
from trio_boca.testing import LiveServer, TestClient

from .conftest import TIMEOUT, records

Open = Callable[[App], AbstractAsyncContextManager[Any]]


@pytest.fixture(params=["in-process", "serve"])
def http(request: pytest.FixtureRequest) -> Open:
    @asynccontextmanager
    async def open_client(app: App) -> AsyncIterator[Any]:
        if request.param == "in-process":
            async with TestClient(app, raise_server_exceptions=False) as client:
                yield client
        else:
            async with LiveServer(app) as server, httpx.AsyncClient(base_url=server.url) as client:
                yield client

    return open_client


def make_app() -> App:
    app = App(max_body_size=1024)

    @app.route("/text")
    async def text(req: Request, res: Response) -> None:
        res.text = "plain"

    @app.route("/page")
    async def page(req: Request, res: Response) -> None:
        res.html = "<h1>hi</h1>"

    @app.route("/items/{id:int}", methods=["GET", "PUT"])
    async def item(req: Request, res: Response, id: int) -> None:
        res.status_code = 201 if req.method == "PUT" else 200
        res.headers["X-Item"] = str(id)
        res.json = {"id": id, "q": req.query_params.get("q"), "agent": req.headers.get("x-agent")}

    @app.route("/echo", methods=["POST"])
    async def echo(req: Request, res: Response) -> None:
        res.json = {"got": await req.json(), "path": req.url.path, "client": req.client is not None}

    @app.route("/raw", methods=["POST"])
    async def raw(req: Request, res: Response) -> None:
        res.content = (await req.body())[::-1]
        res.headers["content-type"] = "application/octet-stream"

    @app.route("/teapot")
    async def teapot(req: Request, res: Response) -> None:
        raise HTTPError(418, "short and stout")

    @app.route("/crash")
    async def crash(req: Request, res: Response) -> None:
        raise ValueError("the view broke")

    return app


async def test_responses_carry_status_headers_and_body(http: Open) -> None:
    with trio.fail_after(TIMEOUT):
        async with http(make_app()) as client:
            text = await client.get("/text")
            page = await client.get("/page")
            item = await client.put("/items/7?q=x", headers={"X-Agent": "tests"})
    assert (text.status_code, text.text) == (200, "plain")
    assert text.headers["content-type"] == "text/plain; charset=utf-8"
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    assert (item.status_code, item.headers["x-item"]) == (201, "7")
    assert item.json() == {"id": 7, "q": "x", "agent": "tests"}


async def test_request_bodies(http: Open) -> None:
    with trio.fail_after(TIMEOUT):
        async with http(make_app()) as client:
            echoed = await client.post("/echo", json={"a": [1, 2]})
            reversed_ = await client.post("/raw", content=b"abc")
            bad = await client.post("/echo", content=b"{nope")
    assert echoed.json() == {"got": {"a": [1, 2]}, "path": "/echo", "client": True}
    assert reversed_.content == b"cba"
    assert bad.status_code == 400
    assert bad.text.startswith("invalid JSON")


async def test_errors_404_405_and_http_error(http: Open) -> None:
    with trio.fail_after(TIMEOUT):
        async with http(make_app()) as client:
            missing = await client.get("/nowhere")
            bad_param = await client.get("/items/seven")
            wrong = await client.delete("/items/7")
            teapot = await client.get("/teapot")
    assert missing.status_code == bad_param.status_code == 404
    assert wrong.status_code == 405
    assert wrong.headers["allow"] == "GET, HEAD, PUT"
    assert (teapot.status_code, teapot.text) == (418, "short and stout")


async def test_head_is_answered_wherever_get_is(http: Open) -> None:
    with trio.fail_after(TIMEOUT):
        async with http(make_app()) as client:
            head = await client.head("/text")
    assert head.status_code == 200
    assert head.content == b""
    assert head.headers["content-length"] == "5"


async def test_a_view_that_raises_is_a_500_logged_once(
    http: Open, caplog: pytest.LogCaptureFixture
) -> None:
    with trio.fail_after(TIMEOUT):
        async with http(make_app()) as client:
            crashed = await client.get("/crash")
            after = await client.get("/text")
    assert crashed.status_code == 500
    assert after.status_code == 200  # the server goes on
    [error] = records(caplog, logging.ERROR)
    assert error.exc_info is not None and isinstance(error.exc_info[1], ValueError)
    assert not [r for r in caplog.records if r.name.startswith("hypercorn") and r.levelno >= 40]


async def test_a_declared_body_over_the_limit_is_413_before_the_view_runs(http: Open) -> None:
    with trio.fail_after(TIMEOUT):
        async with http(make_app()) as client:
            too_big = await client.post("/raw", content=b"x" * 2048)
            fits = await client.post("/raw", content=b"x" * 1024)
    assert too_big.status_code == 413
    assert fits.status_code == 200


async def test_a_streamed_body_is_abandoned_at_the_limit() -> None:
    """Chunks with no content-length: the app stops reading at the limit."""
    app = make_app()
    pulled = 0

    async def receive() -> dict[str, Any]:
        nonlocal pulled
        pulled += 1
        return {"type": "http.request", "body": b"x" * 256, "more_body": True}

    sent: list[MutableMapping[str, Any]] = []

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/raw", "headers": [], "query_string": b""}
    with trio.fail_after(TIMEOUT):
        await app(scope, receive, send)
    assert sent[0]["status"] == 413
    assert pulled == 5  # 1024 bytes fit in four chunks; the fifth crosses the limit


async def test_test_client_reraises_http_view_exceptions() -> None:
    with trio.fail_after(TIMEOUT):
        async with TestClient(make_app()) as client:
            with pytest.raises(ValueError, match="the view broke"):
                await client.get("/crash")


def test_routes_are_checked_at_declaration() -> None:
    app = App()

    @app.route("/things", methods=["GET"])
    async def list_things(req: Request, res: Response) -> None:  # pragma: no cover
        pass

    @app.route("/things", methods=["POST"])
    async def add_thing(req: Request, res: Response) -> None:  # pragma: no cover
        pass

    with pytest.raises(ValueError, match="already has a GET view"):
        app.route("/things")(list_things)

    async def edit_thing(req: Request, res: Response) -> None:  # pragma: no cover
        pass

    with pytest.raises(ValueError, match="already has a POST view"):
        app.route("/things", methods=["PUT", "POST"])(edit_thing)
    found = app.http_routes.find("/things")
    assert found is not None and "PUT" not in found.views  # nothing half-registered

    def sync(req: Request, res: Response) -> None:  # pragma: no cover
        pass

    with pytest.raises(TypeError, match="HTTP view 'test_routes_are_checked_at_declaration"):
        app.route("/sync")(sync)  # type: ignore[type-var]
