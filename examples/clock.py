"""A view that only sends: the server's time, every second, until the client leaves.

It never calls receive(), yet it stops as soon as its client goes: trio_boca
cancels it, and its `finally` block runs.
"""

import logging
from datetime import datetime, timezone

import trio

from trio_boca import App, WebSocket

logger = logging.getLogger("examples.clock")
app = App()
INTERVAL = 1.0


@app.websocket_route("/clock")
async def clock(ws: WebSocket) -> None:
    try:
        while True:
            await ws.send(datetime.now(timezone.utc).isoformat(timespec="seconds"))
            await trio.sleep(INTERVAL)
    finally:
        logger.info("clock stopped for %s", ws.client)
