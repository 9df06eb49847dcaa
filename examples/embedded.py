"""trio_boca inside a larger Trio program: the server is one task among others.

    python examples/embedded.py

Ctrl-C cancels the program; the server inside it stops gracefully: open
WebSockets get close 1001, views' `finally` blocks run, shutdown hooks run.
"""

import trio

from trio_boca import App, WebSocket

app = App()
latest: list[float] = [0.0]


@app.websocket_route("/latest")
async def latest_reading(ws: WebSocket) -> None:
    await ws.send_json({"latest": latest[-1]})


async def sensor(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
    """Stands in for the rest of the program: here, a sensor read every 0.1 s."""
    value = 20.0
    task_status.started()
    while True:
        value += 0.5
        latest.append(value)
        await trio.sleep(0.1)


async def main(*, task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED) -> None:
    async with trio.open_nursery() as nursery:
        await nursery.start(sensor)
        address = await nursery.start(app.serve, "127.0.0.1", 0)
        print(f"latest reading at ws://{address.host}:{address.port}/latest", flush=True)
        task_status.started(f"ws://{address.host}:{address.port}/latest")


if __name__ == "__main__":
    trio.run(main)
