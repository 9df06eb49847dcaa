"""Broadcast fan-out: one publisher, many subscribers on one room.

    .venv/bin/python bench/fanout.py [--subscribers 100] [--messages 2000] [--rounds 3]

For each backend (memory://, and redis:// against a redis-server this script
starts on a free loopback port, if one is installed), the publisher sends
`--messages` 32-byte text messages as fast as it can while every subscriber
reads; the figure is deliveries per second (subscribers x messages / the
time from the first publish to the last delivery). Subscribers' buffers hold
the whole run, so nothing is dropped and every delivery is counted; the
script checks that each subscriber got every message, in order.

Prints the median over `--rounds` for each backend.
"""

from __future__ import annotations

import argparse
import shutil
import socket
import statistics
import subprocess
import time

import trio

from trio_boca import Broadcast


async def one_round(url: str, subscribers: int, messages: int) -> float:
    async with Broadcast(url, buffer=messages + 1) as broadcast:
        finished = trio.Event()
        done = 0
        payload = "x" * 26  # with the counter, 32 characters a message

        async def subscriber(task_status: trio.TaskStatus[None]) -> None:
            nonlocal done
            async with broadcast.subscribe("room") as subscription:
                task_status.started()
                expected = 0
                async for message in subscription:
                    assert int(message[:6]) == expected, "out of order"
                    expected += 1
                    if expected == messages:
                        break
            done += 1
            if done == subscribers:
                finished.set()

        async with trio.open_nursery() as nursery:
            for _ in range(subscribers):
                await nursery.start(subscriber)
            started = trio.current_time()
            for n in range(messages):
                await broadcast.publish("room", f"{n:06d}{payload}")
            await finished.wait()
            return subscribers * messages / (trio.current_time() - started)


def start_redis() -> tuple[subprocess.Popen[bytes], str] | None:
    program = shutil.which("redis-server")
    if program is None:
        return None
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen(
        [program, "--port", str(port), "--bind", "127.0.0.1", "--save", ""],
        stdout=subprocess.DEVNULL,
    )
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
            return process, f"redis://127.0.0.1:{port}/0"
        except OSError:
            time.sleep(0.02)
    process.kill()
    raise RuntimeError("redis-server did not start")


async def main(subscribers: int, messages: int, rounds: int) -> None:
    redis = start_redis()
    urls = ["memory://"] + ([redis[1]] if redis else [])
    try:
        results: dict[str, list[float]] = {url: [] for url in urls}
        for _ in range(rounds):  # interleaved, so a noisy moment hits both
            for url in urls:
                results[url].append(await one_round(url, subscribers, messages))
        print(f"fan-out: 1 publisher, {subscribers} subscribers, {messages} messages of 32 B")
        for url, figures in results.items():
            backend = url.split("://")[0]
            spread = ", ".join(f"{f:,.0f}" for f in figures)
            print(
                f"{backend:<7} {statistics.median(figures):>12,.0f} deliveries/s (median; {spread})"
            )
        if redis is None:
            print("redis   (not run: redis-server is not installed)")
    finally:
        if redis is not None:
            redis[0].kill()
            redis[0].wait()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--subscribers", type=int, default=100)
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    options = parser.parse_args()
    trio.run(main, options.subscribers, options.messages, options.rounds)
