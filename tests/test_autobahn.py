"""Conformance: Autobahn's fuzzing-client cases against trio_boca's own server.

Sections 1-7 (framing, pings, reserved bits, opcodes, fragmentation, UTF-8,
closing), 9 (large messages), 10 (auto-fragmentation), and 12 and 13
(permessage-deflate, so compression is on) are run by kosoku, which drives
Autobahn's own case files, in a process of its own. Every case must be graded
OK, NON-STRICT or INFORMATIONAL. It takes about four minutes on two cores,
most of it compressing sections 12 and 13; `pytest -m "not autobahn"` skips it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import trio

from trio_boca import App, WebSocket

pytestmark = pytest.mark.autobahn

SECTIONS = ["1", "2", "3", "4", "5", "6", "7", "9", "10", "12", "13"]
PASSING = {"OK", "NON-STRICT", "INFORMATIONAL"}


def echo() -> App:
    # Any origin: the fuzzer is not a browser. Messages as large as section 9's.
    app = App(allowed_origins=["*"], inbox_bytes=1 << 25)

    @app.websocket_route("/", value_type="event")
    async def view(ws: WebSocket) -> None:
        async for event in ws:
            await ws.send({**event, "type": "websocket.send"})

    return app


async def test_autobahn_fuzzing_client_sections_1_to_7_9_10_12_13(tmp_path: Path) -> None:
    kosoku = Path(sys.executable).with_name("kosoku")  # the script beside this Python
    if not kosoku.exists():
        pytest.fail("kosoku is not installed: pip install the test extra")
    with trio.fail_after(900):
        async with trio.open_nursery() as nursery:
            address = await nursery.start(
                lambda task_status: echo().serve(
                    "127.0.0.1",
                    0,
                    compression=True,
                    max_message_size=1 << 25,
                    task_status=task_status,
                )
            )
            command = [str(kosoku), f"{address.ws_url}/", "-p", "8", "-o", str(tmp_path)]
            for section in SECTIONS:
                command += ["-i", f"{section}.*"]
            await trio.run_process(command, stdout=subprocess.DEVNULL)
            nursery.cancel_scope.cancel()
    [cases] = json.loads((tmp_path / "index.json").read_text()).values()
    grades = Counter((case["behavior"], case["behaviorClose"]) for case in cases.values())
    failed = {
        name: (case["behavior"], case["behaviorClose"])
        for name, case in cases.items()
        if case["behavior"] not in PASSING or case["behaviorClose"] not in PASSING
    }
    assert failed == {}, grades
    assert len(cases) == 517
