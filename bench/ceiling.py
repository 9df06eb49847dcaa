"""The Trio ceiling: a WebSocket echo with no library at all.

One task per connection; the handshake answered and the frames parsed by
hand, with only what the benchmark's client sends in mind (no extensions,
no fragmentation, no validation worth the name). Not a server anyone should
run: the upper bound of what Trio itself allows on this machine, against
which every other row's distance is what its libraries and framework cost.

    serve_ceiling(port, task_status=...)   (bench/serve.py's "ceiling")
"""

from __future__ import annotations

import base64
import hashlib
import struct
from functools import partial

import trio

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def _accept_key(head: bytes) -> bytes:
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"sec-websocket-key":
            return base64.b64encode(hashlib.sha1(value.strip() + GUID).digest())
    raise ValueError("no Sec-WebSocket-Key")


def _unmask(payload: bytes, mask: bytes) -> bytes:
    # XOR with a repeated 4-byte key, through one big integer: no per-byte loop.
    key = (mask * (len(payload) // 4 + 1))[: len(payload)]
    value = int.from_bytes(payload, "big") ^ int.from_bytes(key, "big")
    return value.to_bytes(len(payload), "big")


async def _connection(stream: trio.SocketStream) -> None:
    buffer = b""
    try:
        while b"\r\n\r\n" not in buffer:
            data = await stream.receive_some(65536)
            if not data:
                return
            buffer += data
        head, _, buffer = buffer.partition(b"\r\n\r\n")
        await stream.send_all(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + _accept_key(head) + b"\r\n\r\n"
        )
        while True:
            while len(buffer) < 6:
                data = await stream.receive_some(65536)
                if not data:
                    return
                buffer += data
            opcode, length = buffer[0] & 0x0F, buffer[1] & 0x7F
            start = 2
            if length == 126:
                (length,) = struct.unpack("!H", buffer[2:4])
                start = 4
            elif length == 127:
                (length,) = struct.unpack("!Q", buffer[2:10])
                start = 10
            while len(buffer) < start + 4 + length:
                data = await stream.receive_some(65536)
                if not data:
                    return
                buffer += data
            mask = buffer[start : start + 4]
            payload = _unmask(buffer[start + 4 : start + 4 + length], mask)
            buffer = buffer[start + 4 + length :]
            if opcode == 0x8:  # close: echo it, then end
                await stream.send_all(bytes([0x88, len(payload)]) + payload)
                return
            if length < 126:
                header = bytes([0x80 | opcode, length])
            else:
                header = bytes([0x80 | opcode, 126]) + struct.pack("!H", length)
            await stream.send_all(header + payload)
    except trio.BrokenResourceError:
        return


async def serve_ceiling(
    port: int, *, task_status: trio.TaskStatus[list[trio.SocketListener]]
) -> None:
    await trio.serve_tcp(partial(_connection), port, host="127.0.0.1", task_status=task_status)
