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
