"""A small terminal client: type a line, see what the server answers.

    python examples/client.py [ws://127.0.0.1:8000/echo]

Each line you type is sent as a text message; every message the server sends
is printed. At the end of input (Ctrl-D, or the end of a pipe) the client
waits for replies still on their way, then closes the connection normally.
"""

from __future__ import annotations

import sys

import trio
from trio_websocket import ConnectionClosed, WebSocketConnection, open_websocket_url

QUIET = 0.3  # leave once the server has said nothing for this long...
PATIENCE = 3.0  # ... or after this long, whatever it says


async def show_replies(ws: WebSocketConnection, heard: list[float]) -> None:
    try:
        while True:
            message = await ws.get_message()
            heard.append(trio.current_time())
            print(f"< {message!s}", flush=True)
    except ConnectionClosed as closed:
        reason = closed.reason
        code = reason.code if reason else 1006
        print(f"connection closed: {code} {(reason.reason or '') if reason else ''}")


async def main(url: str) -> None:
    async with open_websocket_url(url) as ws:
        print(f"connected to {url}; type a message, Ctrl-D to leave", flush=True)
        heard = [trio.current_time()]
        async with trio.open_nursery() as nursery:
            nursery.start_soon(show_replies, ws, heard)
            async for line in trio.wrap_file(sys.stdin):
                await ws.send_message(line.rstrip("\n"))
            with trio.move_on_after(PATIENCE):
                while trio.current_time() - heard[-1] < QUIET:  # noqa: ASYNC110
                    await trio.sleep(QUIET / 3)
            await ws.aclose()


if __name__ == "__main__":
    trio.run(main, sys.argv[1] if len(sys.argv) > 1 else "ws://127.0.0.1:8000/echo")
