"""What permessage-deflate costs trio_boca, off (the default) and on (bounded).

    .venv/bin/python -m bench.compression [--rounds 3]

Serves the echo under trio_boca's serve() both ways, interleaved, and
measures the RSS per idle connection (1,000 of them, with clients that do
and do not offer compression, one message each) and the echo throughput at
16 connections (with clients that do and do not compress). Prints a table
for docs/operations.md.
"""

from __future__ import annotations

import argparse
import statistics

from .__main__ import Server, idle_memory, loaded

SETTINGS = {"off": "trio_boca-serve", "on (bounded)": "trio_boca-serve-compression"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rounds", type=int, default=3)
    rounds = parser.parse_args().rounds
    figures: dict[tuple[str, str], list[float]] = {}
    port = 18900
    for _ in range(rounds):
        for setting, name in SETTINGS.items():
            for mode in ("idle", "idle-deflate"):
                port += 1
                figures.setdefault((setting, mode), []).append(idle_memory(name, port, 1000, mode))
            port += 1
            server = Server(name, port)
            try:
                for load in ("echo", "echo-deflate"):
                    result = loaded(server, load, port, 16, 2)
                    figures.setdefault((setting, load), []).append(result["messages_per_s"])
            finally:
                server.stop()
    print(
        "| compression | KiB per idle connection | offering deflate "
        "| echo msg/s, 16 | compressing clients |"
    )
    print("|---|---|---|---|---|")
    for setting in SETTINGS:
        cells = [statistics.median(figures[setting, key]) for key in ("idle", "idle-deflate")]
        rates = [statistics.median(figures[setting, key]) for key in ("echo", "echo-deflate")]
        print(
            f"| {setting} | {cells[0]:.1f} | {cells[1]:.1f} | {rates[0]:,.0f} | {rates[1]:,.0f} |"
        )


if __name__ == "__main__":
    main()
