"""Apps the CLI tests serve in a subprocess (`tests.cli_apps:...`)."""

from __future__ import annotations

import os

from trio_boca import App, Request, Response, WebSocket

app = App()


@app.route("/pid")
async def pid(req: Request, res: Response) -> None:
    res.text = str(os.getpid())


@app.websocket_route("/wait")
async def wait(ws: WebSocket) -> None:
    await ws.send("ready")
    async for _ in ws:
        pass


broken = App()


@broken.on("startup")
async def connect_to_database() -> None:
    raise ConnectionRefusedError("database at db:5432 refused")


crashing = App()


@crashing.on("startup")
async def read_settings() -> None:
    raise KeyError("DATABASE_URL")


dying = App()


@dying.on("startup")
async def die() -> None:
    os._exit(9)  # a worker that crashes as soon as it starts, every time


@app.route("/client")
async def client(req: Request, res: Response) -> None:
    res.text = req.client[0] if req.client else ""


#: A page that opens the WebSocket its query names (`?ws=ws://...`) and says
#: what became of it: served from two ports, one origin talks to another.
ORIGIN_PAGE = """<!doctype html>
<title>origin check</title>
<p id="status">connecting</p>
<script>
  const status = document.getElementById("status");
  const socket = new WebSocket(new URLSearchParams(location.search).get("ws"));
  let opened = false;
  socket.onopen = () => { opened = true; socket.send("hello"); };
  socket.onmessage = (event) => { status.textContent = "echo: " + event.data; };
  socket.onclose = () => { if (!opened) status.textContent = "refused"; };
</script>
"""

pages = App()


@pages.route("/")
async def origin_page(req: Request, res: Response) -> None:
    res.html = ORIGIN_PAGE


@pages.websocket_route("/echo")
async def page_echo(ws: WebSocket) -> None:
    async for message in ws:
        await ws.send(message)


#: Targets that are not apps: `trio-boca run` says so in one line.
TEXT = "<!doctype html><title>not an app</title>"


def handler() -> None:
    """A plain function, not an ASGI application."""
