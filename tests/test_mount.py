"""Other ASGI apps under an App: `app.mount(prefix, asgi_app)`.

Over each transport (in-process, plain hypercorn, trio_boca's server): a
Starlette app with HTTP routes and a WebSocket endpoint under /legacy, and
the door a mounted WebSocket passes (origin, limits, checks) like a route's.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from trio_boca import App, WebSocket
from trio_boca.testing import LiveServer, TestClient

from .conftest import TIMEOUT, Transport, refused
from .test_asgi_apps import starlette_echo

pytest.importorskip("starlette")

CHAT_STATIC = Path("examples/chat/static")


def legacy_app(seen: list[Any]) -> Any:
    """A Starlette app: HTTP routes that say what they were asked, and an echo."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, PlainTextResponse
    from starlette.routing import Route, WebSocketRoute

    async def where(request: Request) -> JSONResponse:
        scope = request.scope
        return JSONResponse(
            {"root_path": scope["root_path"], "path": scope["path"], "url": str(request.url)}
        )

    async def hello(request: Request) -> PlainTextResponse:
        return PlainTextResponse(f"hello {request.path_params['name']}")

    return Starlette(
        routes=[
            Route("/", where),
            Route("/hello/{name}", hello),
            WebSocketRoute("/ws", starlette_echo(seen)),
        ]
    )


def mounting_app(seen: list[Any], **options: Any) -> App:
    app = App(**options)
    app.mount("/legacy", legacy_app(seen))

    # Declared after the mount, under its prefix: the App's routes still win.
    @app.route("/legacy/own")
    async def own(req: Any, res: Any) -> None:
        res.text = "the App's own"

    @app.websocket_route("/legacy/own")
    async def own_ws(ws: WebSocket) -> None:
        await ws.send("the App's own")

    return app


def inner_app() -> App:
    """A trio_boca App to mount: /where says its scope, /ws where it was mounted."""
    inner = App()

    @inner.route("/where")
    async def where(req: Any, res: Any) -> None:
        res.json = {"root_path": req.scope["root_path"], "path": req.scope["path"]}

    @inner.websocket_route("/ws")
    async def inner_ws(ws: WebSocket) -> None:
        await ws.send(f"inner at {ws.scope['root_path']}")

    return inner


async def get(server: TestClient | LiveServer, path: str, **options: Any) -> httpx.Response | Any:
    if isinstance(server, TestClient):
        return await server.get(path, **options)
    async with httpx.AsyncClient(base_url=server.url) as http:
        return await http.get(path, **options)


async def test_a_mounted_app_serves_http_under_its_prefix(serve: Transport) -> None:
    with trio.fail_after(TIMEOUT):
        async with serve(mounting_app([])) as server:
            hello = await get(server, "/legacy/hello/ann")
            assert (hello.status_code, hello.text) == (200, "hello ann")
            # As the ASGI spec says: the prefix moves into root_path, the path stays whole.
            where = (await get(server, "/legacy/")).json()
            assert (where["root_path"], where["path"]) == ("/legacy", "/legacy/")
            assert where["url"].endswith("/legacy/")
            # The App's own route wins over the mount, whatever the order.
            assert (await get(server, "/legacy/own")).text == "the App's own"
            # Whole segments only; and what the mounted app does not know is its 404.
            assert (await get(server, "/legacyx")).status_code == 404
            assert (await get(server, "/legacy/nothing")).status_code == 404


async def test_a_mounted_websocket_works_and_routes_win(serve: Transport) -> None:
    seen: list[Any] = []
    app = mounting_app(seen)
    with trio.fail_after(TIMEOUT):
        async with serve(app) as server:
            async with server.websocket("/legacy/ws") as ws:
                for text in ("one", "two"):
                    await ws.send(text)
                    assert await ws.receive() == text
                assert app.metrics.snapshot()["routes"]["/legacy/{path:path}"]["open"] == 1
            async with server.websocket("/legacy/own") as ws:
                assert await ws.receive() == "the App's own"
            with trio.fail_after(2):
                while app.guard.census.open or not seen:  # noqa: ASYNC110 - polling a count
                    await trio.sleep(0.01)
    tally = app.metrics.snapshot()["routes"]["/legacy/{path:path}"]
    assert tally["open"] == 0
    assert tally["handshakes"] == {101: 1}
    assert tally["messages_in"] == tally["messages_out"] == 2
    assert seen == ["WebSocketDisconnect"]


async def test_a_cross_origin_handshake_to_a_mount_is_refused_by_default(
    serve: Transport, caplog: pytest.LogCaptureFixture
) -> None:
    seen: list[Any] = []
    app = mounting_app(seen)
    app.mount("/open", legacy_app(seen), allowed_origins=["https://partner.example"])
    evil = {"origin": "https://evil.example"}
    with trio.fail_after(TIMEOUT):
        async with serve(app) as server:
            rejected = await refused(server, "/legacy/ws", headers=evil)
            assert rejected.status == 403
            assert b"origin not allowed" in rejected.body or not serve.live or rejected.body == b""
            # The mount's own policy replaces the App's, as on a route.
            assert (await refused(server, "/open/ws", headers=evil)).status == 403
            partner = {"origin": "https://partner.example"}
            async with server.websocket("/open/ws", headers=partner) as ws:
                await ws.send("hi")
                assert await ws.receive() == "hi"
    assert app.metrics.refusals["origin"] == 2
    assert "refused a handshake from origin 'https://evil.example'" in caplog.text
    assert app.guard.census.open == 0


async def test_the_apps_checks_and_the_mounts_run_before_the_mounted_app(
    serve: Transport,
) -> None:
    seen: list[Any] = []
    order: list[str] = []
    app = App()

    @app.websocket_check
    async def needs_token(ws: WebSocket) -> None:
        order.append("app")
        if ws.query_params.get("token") != "t":
            await ws.reject(401, body="token please")

    async def no_bobs(ws: WebSocket) -> None:
        order.append("mount")
        if ws.query_params.get("name") == "bob":
            await ws.reject(403, body="no bobs")

    app.mount("/legacy", legacy_app(seen), checks=[no_bobs])
    app.mount("/public", legacy_app(seen), app_checks=False)
    with trio.fail_after(TIMEOUT):
        async with serve(app) as server:
            assert (await refused(server, "/legacy/ws")).status == 401
            assert order == ["app"]
            assert (await refused(server, "/legacy/ws?token=t&name=bob")).status == 403
            assert order == ["app", "app", "mount"]
            async with server.websocket("/legacy/ws?token=t&name=ann") as ws:
                await ws.send("in")
                assert await ws.receive() == "in"
            async with server.websocket("/public/ws") as ws:  # no token: no App checks here
                await ws.send("open")
                assert await ws.receive() == "open"
    tally = app.metrics.snapshot()["routes"]["/legacy/{path:path}"]
    assert tally["handshakes"] == {401: 1, 403: 1, 101: 1}


async def test_the_connection_limits_count_mounted_websockets(serve: Transport) -> None:
    seen: list[Any] = []
    app = mounting_app(seen, max_connections=1)
    with trio.fail_after(TIMEOUT):
        async with serve(app) as server:
            async with server.websocket("/legacy/ws"):
                assert app.guard.census.open == 1
                assert (await refused(server, "/legacy/ws")).status == 503
            with trio.fail_after(2):
                while app.guard.census.open:  # noqa: ASYNC110 - polling a count
                    await trio.sleep(0.01)
            async with server.websocket("/legacy/ws") as ws:  # the slot came back
                await ws.send("again")
                assert await ws.receive() == "again"


async def test_a_check_that_accepts_a_mounted_handshake_is_a_bug_answered_500(
    caplog: pytest.LogCaptureFixture,
) -> None:
    seen: list[Any] = []
    app = App()

    async def accepts(ws: WebSocket) -> None:
        await ws.accept()

    app.mount("/legacy", legacy_app(seen), checks=[accepts])
    with trio.fail_after(TIMEOUT):
        async with LiveServer(app) as server:
            assert (await refused(server, "/legacy/ws")).status == 500
        async with TestClient(app) as client:
            with pytest.raises(RuntimeError, match="a check may only refuse"):
                async with client.websocket("/legacy/ws"):
                    pass  # pragma: no cover
    assert seen == []  # the mounted app never ran
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 2
    assert all("WebSocket check for '/legacy/ws' failed; answered 500" in r.message for r in errors)
    assert app.guard.census.open == 0


async def test_the_longest_prefix_wins_and_a_trio_boca_app_can_be_mounted() -> None:
    inner = inner_app()
    app = App()
    app.mount("/", legacy_app([]))
    app.mount("/v2/", inner)  # the trailing slash is not part of the prefix
    with pytest.raises(ValueError, match="already mounted at '/v2'"):
        app.mount("/v2", inner)
    for bad in ("v2", "/v{n}", "/a?b"):
        with pytest.raises(ValueError, match="mount prefix"):
            app.mount(bad, inner)
    with trio.fail_after(TIMEOUT):
        async with LiveServer(app) as server:
            assert (await get(server, "/v2/where")).json() == {
                "root_path": "/v2",
                "path": "/v2/where",
            }
            assert (await get(server, "/hello/root")).text == "hello root"  # the root mount
            async with server.websocket("/v2/ws") as ws:
                assert await ws.receive() == "inner at /v2"


async def test_starlette_staticfiles_serves_the_chat_pages_assets(serve: Transport) -> None:
    from examples.chat.app import app

    if serve.live:  # the page's own requests, over a real socket
        with trio.fail_after(TIMEOUT):
            async with serve(app) as server:
                page = await get(server, "/")
                assert '<script src="/static/chat.js"></script>' in page.text
                for name, kind in (
                    ("chat.js", "text/javascript"),
                    ("chat.css", "text/css"),
                    ("icon.svg", "image/svg+xml"),
                ):
                    asset = await get(server, f"/static/{name}")
                    assert asset.status_code == 200, name
                    assert asset.headers["content-type"].startswith(kind), name
                    assert asset.content == (CHAT_STATIC / name).read_bytes()
                    again = await get(
                        server, f"/static/{name}", headers={"if-none-match": asset.headers["etag"]}
                    )
                    assert again.status_code == 304
                assert (await get(server, "/static/nothing.js")).status_code == 404
    else:
        async with TestClient(app) as client:
            asset = await client.get("/static/chat.css")
            assert asset.content == (CHAT_STATIC / "chat.css").read_bytes()


async def test_an_app_mounted_under_starlette_routes_on_its_part_of_the_path() -> None:
    """Starlette's Mount keeps the whole path and grows root_path (the ASGI
    spec's rule): the App routes on what lies past its root_path."""
    from starlette.applications import Starlette
    from starlette.routing import Mount

    inner = inner_app()
    outer = Starlette(routes=[Mount("/tb", app=inner)])
    with trio.fail_after(TIMEOUT):
        async with LiveServer(outer) as server:
            assert (await get(server, "/tb/where")).json() == {
                "root_path": "/tb",
                "path": "/tb/where",
            }
            async with server.websocket("/tb/ws") as ws:
                assert await ws.receive() == "inner at /tb"
