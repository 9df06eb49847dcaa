"""Echo server: every message comes back; the connection is accepted and closed for you.

Run it (see README.md):  hypercorn --worker-class trio --bind 127.0.0.1:8000 examples.echo:app
Talk to it:              python examples/client.py ws://127.0.0.1:8000/echo
"""

from trio_boca import App, WebSocket

app = App()


@app.websocket_route("/echo")
async def echo(ws: WebSocket) -> None:
    async for message in ws:
        await ws.send(message)
