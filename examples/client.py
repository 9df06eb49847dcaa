"""A small terminal client: type a line, see what the server answers.

    python examples/client.py [ws://127.0.0.1:8000/echo]

Each line you type is sent as a text message; every message the server sends
is printed. Ctrl-D (end of input) closes the connection normally.
"""

from __future__ import annotations

import sys

import trio
from trio_websocket import ConnectionClosed, open_websocket_url


async def main(url: str) -> None:
    async with open_websocket_url(url) as ws:
        print(f"connected to {url}; type a message, Ctrl-D to leave")

        async def show_replies() -> None:
            try:
                while True:
                    print(f"< {await ws.get_message()!s}")
            except ConnectionClosed as closed:
                reason = closed.reason
                code = reason.code if reason else 1006
                print(f"server closed the connection: {code} {reason.reason if reason else ''}")

        async with trio.open_nursery() as nursery:
            nursery.start_soon(show_replies)
            stdin = trio.wrap_file(sys.stdin)
            async for line in stdin:
                await ws.send_message(line.rstrip("\n"))
            await ws.aclose()


if __name__ == "__main__":
    trio.run(main, sys.argv[1] if len(sys.argv) > 1 else "ws://127.0.0.1:8000/echo")
