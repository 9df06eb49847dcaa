"""trio_boca beside anyio-based libraries, on Trio.

    UPSTREAM=http://127.0.0.1:9000 trio-boca run examples.ecosystem:app

- httpx: one `AsyncClient` for the app's life, opened and closed by the
  App's hooks, used in an HTTP view and in a WebSocket view;
- an anyio task group inside a WebSocket view;
- a Starlette app mounted under /legacy, its lifespan run by the App's hooks
  (a mounted app's lifespan is not forwarded).

`UPSTREAM` is the base URL of a service that answers `GET /forecast/{city}`
with JSON.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import anyio
import httpx
from starlette.applications import Starlette
from starlette.requests import Request as StarletteRequest
from starlette.responses import PlainTextResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket as StarletteWebSocket
from starlette.websockets import WebSocketDisconnect as StarletteDisconnect

from trio_boca import App, HTTPError, Request, Response, WebSocket


# --8<-- [start:legacy]
@asynccontextmanager
async def legacy_lifespan(legacy: Starlette) -> AsyncIterator[None]:
    legacy.state.greeting = "hello"  # a connection pool, a cache...
    yield
    legacy.state.greeting = None


async def legacy_hello(request: StarletteRequest) -> PlainTextResponse:
    return PlainTextResponse(f"{request.app.state.greeting} from Starlette")


async def legacy_echo(ws: StarletteWebSocket) -> None:
    await ws.accept()
    try:
        while True:
            await ws.send_text(await ws.receive_text())
    except StarletteDisconnect:
        pass


legacy = Starlette(
    routes=[Route("/", legacy_hello), WebSocketRoute("/ws", legacy_echo)],
    lifespan=legacy_lifespan,
)
app = App()
app.mount("/legacy", legacy)
# --8<-- [end:legacy]

# --8<-- [start:httpx]
#: What the hooks open at startup and close at shutdown, in reverse order.
lifetimes = AsyncExitStack()
#: The app's one HTTP client (connection pooling), open while the app runs.
http: httpx.AsyncClient


@app.on("startup")
async def open_services() -> None:
    global http
    # The mounted app's lifespan is not forwarded: the App's hooks run it.
    await lifetimes.enter_async_context(legacy.router.lifespan_context(legacy))
    upstream = os.environ.get("UPSTREAM", "http://127.0.0.1:9000")
    http = await lifetimes.enter_async_context(httpx.AsyncClient(base_url=upstream, timeout=5))


@app.on("shutdown")
async def close_services() -> None:
    await lifetimes.aclose()


async def forecast(city: str) -> Any:
    try:
        reply = await http.get(f"/forecast/{city}")
        reply.raise_for_status()
    except httpx.HTTPError as exc:
        raise HTTPError(502, f"the forecast service failed: {exc}") from None
    return reply.json()


@app.route("/forecast/{city}")
async def one_forecast(req: Request, res: Response, city: str) -> None:
    res.json = await forecast(city)


@app.websocket_route("/ws/forecasts", value_type="json")
async def many_forecasts(ws: WebSocket) -> None:
    """For each list of cities the client sends, their forecasts, fetched at once."""
    async for cities in ws:
        found: dict[str, Any] = {}
        async with anyio.create_task_group() as group:
            for city in cities:
                group.start_soon(fetch_into, found, str(city))
        await ws.send(found)


async def fetch_into(found: dict[str, Any], city: str) -> None:
    found[city] = await forecast(city)


# --8<-- [end:httpx]
