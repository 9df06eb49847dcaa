"""A lean WebSocket load generator: hand-built frames over raw Trio sockets.

    python -m bench.client echo  PORT CONNECTIONS SECONDS
    python -m bench.client echo-deflate PORT CONNECTIONS SECONDS   (offering compression)
    python -m bench.client churn PORT LOOPS SECONDS
    python -m bench.client idle  PORT CONNECTIONS      (holds them until stdin closes)
    python -m bench.client idle-deflate PORT CONNECTIONS   (the same, offering compression)

Each prints one JSON line of results, with the CPU seconds this process used,
so a reader can see the client was not the bottleneck. Frames are built once
and sent as is (one fixed mask: legal for a client, and free), and only what
an echo needs is parsed.
"""

from __future__ import annotations

import json
import resource
import struct
import sys
import zlib
from typing import Any

import trio

MESSAGE = b"0123456789abcdef0123456789abcdef"  # 32 bytes of text
MASK = b"\x12\x34\x56\x78"
REQUEST = (
    "GET /echo HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
    "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    "Sec-WebSocket-Version: 13\r\n{extra}\r\n"
)
#: What every browser offers.
DEFLATE = "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
SYNC_TAIL = b"\x00\x00\xff\xff"  # the end of a deflate sync flush, left off the wire


def frame(payload: bytes, opcode: int, compressed: bool = False) -> bytes:
    masked = bytes(b ^ MASK[i % 4] for i, b in enumerate(payload))
    first = 0x80 | (0x40 if compressed else 0) | opcode
    return bytes([first, 0x80 | len(payload)]) + MASK + masked


def deflated(payload: bytes) -> bytes:
    compressor = zlib.compressobj(wbits=-15)
    data = compressor.compress(payload) + compressor.flush(zlib.Z_SYNC_FLUSH)
    return data[: -len(SYNC_TAIL)]


TEXT = frame(MESSAGE, 0x1)
COMPRESSED = frame(deflated(MESSAGE), 0x1, compressed=True)
CLOSE = frame(struct.pack("!H", 1000), 0x8)


class Connection:
    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.buffer = b""
        #: The server accepted permessage-deflate.
        self.compressed = False

    @classmethod
    async def open(cls, port: int, offer_deflate: bool = False) -> Connection:
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        connection = cls(stream)
        extra = DEFLATE if offer_deflate else ""
        await stream.send_all(REQUEST.format(port=port, extra=extra).encode())
        while b"\r\n\r\n" not in connection.buffer:
            connection.buffer += await connection._more()
        head, _, connection.buffer = connection.buffer.partition(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 101"):
            raise RuntimeError(head.split(b"\r\n", 1)[0].decode())
        connection.compressed = b"permessage-deflate" in head.lower()
        return connection

    async def _more(self) -> bytes:
        data = await self.stream.receive_some(65536)
        if not data:
            raise EOFError
        return data

    async def frame(self) -> tuple[int, bytes]:
        while True:
            if len(self.buffer) >= 2:
                length = self.buffer[1] & 0x7F
                start = 2
                if length == 126 and len(self.buffer) >= 4:
                    length, start = struct.unpack("!H", self.buffer[2:4])[0], 4
                if length != 126 and len(self.buffer) >= start + length:
                    opcode = self.buffer[0] & 0x0F
                    payload = self.buffer[start : start + length]
                    if self.buffer[0] & 0x40:  # compressed
                        payload = zlib.decompressobj(wbits=-15).decompress(payload + SYNC_TAIL)
                    self.buffer = self.buffer[start + length :]
                    return opcode, payload
            self.buffer += await self._more()

    async def echo(self) -> None:
        await self.stream.send_all(COMPRESSED if self.compressed else TEXT)
        opcode, payload = await self.frame()
        if opcode != 0x1 or payload != MESSAGE:
            raise RuntimeError(f"bad echo: opcode {opcode}, {payload!r}")

    async def close(self) -> None:
        try:
            await self.stream.send_all(CLOSE)
            while (await self.frame())[0] != 0x8:
                pass
        except (EOFError, trio.BrokenResourceError):
            pass
        finally:
            await self.stream.aclose()


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def echo(
    port: int, connections: int, seconds: float, offer_deflate: bool = False
) -> dict[str, Any]:
    opened = [await Connection.open(port, offer_deflate) for _ in range(connections)]
    latencies: list[float] = []
    cpu = cpu_seconds()
    started = trio.current_time()
    deadline = started + seconds

    async def loop(connection: Connection) -> None:
        while trio.current_time() < deadline:
            sent = trio.current_time()
            await connection.echo()
            latencies.append(trio.current_time() - sent)

    async with trio.open_nursery() as nursery:
        for connection in opened:
            nursery.start_soon(loop, connection)
    elapsed = trio.current_time() - started
    cpu = cpu_seconds() - cpu
    for connection in opened:
        await connection.close()
    latencies.sort()
    return {
        "messages_per_s": len(latencies) / elapsed,
        "p50_ms": latencies[len(latencies) // 2] * 1000,
        "p99_ms": latencies[int(len(latencies) * 0.99)] * 1000,
        "client_cpu": cpu / elapsed,
        "elapsed": elapsed,
    }


async def churn(port: int, loops: int, seconds: float) -> dict[str, Any]:
    done = 0
    cpu = cpu_seconds()
    started = trio.current_time()
    deadline = started + seconds

    async def loop() -> None:
        nonlocal done
        while trio.current_time() < deadline:
            connection = await Connection.open(port)
            await connection.echo()
            await connection.close()
            done += 1

    async with trio.open_nursery() as nursery:
        for _ in range(loops):
            nursery.start_soon(loop)
    elapsed = trio.current_time() - started
    return {
        "connections_per_s": done / elapsed,
        "client_cpu": (cpu_seconds() - cpu) / elapsed,
        "elapsed": elapsed,
    }


async def idle(port: int, connections: int, offer_deflate: bool = False) -> None:
    opened: list[Connection] = []
    limit = trio.CapacityLimiter(200)

    async def open_one() -> None:
        async with limit:
            connection = await Connection.open(port, offer_deflate)
            await connection.echo()  # the view has run and is waiting
            opened.append(connection)

    async with trio.open_nursery() as nursery:
        for _ in range(connections):
            nursery.start_soon(open_one)
    compressed = sum(connection.compressed for connection in opened)
    print(json.dumps({"open": len(opened), "compressed": compressed}), flush=True)
    await trio.wrap_file(sys.stdin).readline()
    for connection in opened:
        await connection.stream.aclose()


def main() -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    command, port, *rest = sys.argv[1:]
    if command in ("idle", "idle-deflate"):
        trio.run(idle, int(port), int(rest[0]), command == "idle-deflate")
        return
    count, seconds = int(rest[0]), float(rest[1])
    if command == "churn":
        result = trio.run(churn, int(port), count, seconds)
    else:
        result = trio.run(echo, int(port), count, seconds, command == "echo-deflate")
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
