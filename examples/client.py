"""A small terminal client: type a line, see what the server answers.

    python examples/client.py [ws://127.0.0.1:8000/echo]

Each line you type is sent as a text message; every message the server sends
is printed. At the end of input (Ctrl-D, or the end of a pipe) the client
waits for replies still on their way, then closes the connection normally.
When the server closes the connection, or cannot be reached, it says so in
one line and exits (status 0 and 1).
"""

from __future__ import annotations

import sys

import trio
from trio_websocket import (
    ConnectionClosed,
    HandshakeError,
    WebSocketConnection,
    open_websocket_url,
)

QUIET = 0.3  # leave once the server has said nothing for this long...
PATIENCE = 3.0  # ... or after this long, whatever it says


async def show_replies(ws: WebSocketConnection, heard: list[float], done: trio.CancelScope) -> None:
    """Print what the server sends; when it closes, say so and end the session."""
    try:
        while True:
            message = await ws.get_message()
            heard.append(trio.current_time())
            print(f"< {message!s}", flush=True)
    except ConnectionClosed as closed:
        code, why = (closed.reason.code, closed.reason.reason) if closed.reason else (1006, "")
        print(f"the server closed the connection: {code} {why or ''}".rstrip())
        done.cancel()  # stop reading the keyboard: nothing can be sent any more


async def read_line() -> str:
    # A thread blocked on the terminal cannot be interrupted; abandoning it on
    # cancellation lets the client exit as soon as the server has gone.
    return await trio.to_thread.run_sync(sys.stdin.readline, abandon_on_cancel=True)


async def converse(ws: WebSocketConnection, url: str) -> None:
    print(f"connected to {url}; type a message, Ctrl-D to leave", flush=True)
    heard = [trio.current_time()]
    async with trio.open_nursery() as nursery:
        nursery.start_soon(show_replies, ws, heard, nursery.cancel_scope)
        try:
            while line := await read_line():
                await ws.send_message(line.rstrip("\n"))
            with trio.move_on_after(PATIENCE):
                while trio.current_time() - heard[-1] < QUIET:  # noqa: ASYNC110
                    await trio.sleep(QUIET / 3)
            await ws.aclose()
        except ConnectionClosed:
            pass  # the server went as a line was sent: show_replies says so


async def main(url: str) -> int:
    try:
        async with open_websocket_url(url) as ws:
            await converse(ws, url)
    except HandshakeError as exc:
        cause = exc.__cause__ or exc
        print(f"cannot connect to {url}: {cause}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(trio.run(main, sys.argv[1] if len(sys.argv) > 1 else "ws://127.0.0.1:8000/echo"))
