"""The supervisor of `trio-boca run --workers N` and `--reload`.

It holds the listening socket and runs N worker processes that serve on it
(each a full trio_boca server: stopping one closes its WebSockets with 1001).
Why the workers stop is decided in one place, `Supervisor.end()`:

- a signal (SIGINT or SIGTERM) reaches the supervisor: the same signal goes
  to every worker, and the supervisor exits 0 once they have stopped;
- with `--reload`, a `.py` file changes: the change is logged, the workers
  are stopped with SIGTERM and a new set is started;
- a worker reports that the app could not start (exit status
  `EXIT_NOT_STARTED`): the others are stopped and the supervisor exits 1,
  since a new worker would fail the same way (with `--reload`, it waits for
  a change instead);
- workers die more than `RESTARTS` times within `WINDOW` seconds: as above.

A worker that dies otherwise (killed, crashed) is named, with its exit status
or signal, and replaced, as gunicorn and uvicorn do. With `--reload`, no
worker is replaced until the next change: a file saved half-written, or a
startup hook being edited, would only make it die again.

Each worker slot is one task that owns its process: it starts it, waits for
it, and, when cancelled, stops it (shielded, within the shutdown timeout,
then SIGKILL). Workers run in their own session, so a Ctrl-C in the terminal
reaches the supervisor alone, and the workers once, from it.
"""

from __future__ import annotations

import contextlib
import logging
import signal
from collections import deque
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import trio

logger = logging.getLogger("trio_boca")

#: A worker's exit status when the app could not start (its startup hooks
#: failed, or the socket could not be served): restarting it would not help.
EXIT_NOT_STARTED = 3
#: More deaths than this within WINDOW seconds, and the supervisor gives up.
RESTARTS = 5
WINDOW = 60.0


def describe(returncode: int) -> str:
    """How a process ended, in words: `exited with status 1`, `killed by SIGKILL`."""
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        return f"killed by {name}"
    return f"exited with status {returncode}"


class Supervisor:
    def __init__(
        self,
        command: Sequence[str],
        fd: int,
        workers: int,
        shutdown_timeout: float,
        reload: bool,
    ) -> None:
        self.command = list(command)
        self.fd = fd
        self.workers = workers
        self.shutdown_timeout = shutdown_timeout
        self.reload = reload
        self.deaths: deque[float] = deque(maxlen=RESTARTS + 1)
        # The current set of workers: why it ends, and how its workers are told.
        self._outcome = ""
        self._stop_signal: int = signal.SIGTERM
        self._stopping = trio.Event()
        self._nursery: trio.Nursery | None = None

    async def run(self, signals: AsyncIterator[int]) -> int:
        """Run sets of workers until a signal or a failure; the exit status."""
        while True:
            outcome = await self._run_set(signals)
            if outcome != "changed":
                return 0 if outcome == "signal" else 1

    async def _run_set(self, signals: AsyncIterator[int]) -> str:
        self._outcome = ""
        self._stop_signal = signal.SIGTERM
        self._stopping = trio.Event()
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            nursery.start_soon(self._until_signal, signals)
            if self.reload:
                nursery.start_soon(self._until_change)
            for slot in range(1, self.workers + 1):
                nursery.start_soon(self._keep, slot)
        return self._outcome

    def end(self, outcome: str, stop_signal: int = signal.SIGTERM) -> None:
        """The one place the current set of workers is told to stop, and why.

        The first call wins: a worker dying while the set is being stopped
        is not a second reason.
        """
        if self._outcome:
            return
        self._outcome = outcome
        self._stop_signal = stop_signal
        self._stopping.set()
        assert self._nursery is not None
        self._nursery.cancel_scope.cancel()

    async def _until_signal(self, signals: AsyncIterator[int]) -> None:
        async for signum in signals:
            logger.info("%s: stopping the workers", signal.Signals(signum).name)
            self.end("signal", signum)
            return

    async def _until_change(self) -> None:
        from watchfiles import PythonFilter, awatch

        async for changes in awatch(
            Path.cwd(),
            watch_filter=PythonFilter(),
            debounce=200,
            stop_event=self._stopping,
            rust_timeout=500,
        ):
            paths = sorted({str(Path(path).relative_to(Path.cwd())) for _, path in changes})
            logger.info("reload: %s changed; restarting the workers", ", ".join(paths))
            self.end("changed")
            return

    async def _keep(self, slot: int) -> None:
        """Run worker `slot`, replacing it when it dies, until the set stops."""
        while True:
            process = await trio.lowlevel.open_process(
                self.command, pass_fds=(self.fd,), start_new_session=True
            )
            try:
                await process.wait()
            finally:
                if process.returncode is None:
                    with trio.CancelScope(shield=True):
                        await self._stop(process)
            returncode = process.returncode
            assert returncode is not None
            how = describe(returncode)
            if self.reload:  # the fix is an edit away: wait for it
                logger.error(
                    "worker %d (pid %d) %s; waiting for a change to restart it",
                    slot,
                    process.pid,
                    how,
                )
                return
            if returncode == EXIT_NOT_STARTED:
                logger.error(
                    "worker %d (pid %d): the app could not start; stopping", slot, process.pid
                )
                self.end("failed")
                return
            now = trio.current_time()
            self.deaths.append(now)
            if len(self.deaths) > RESTARTS and now - self.deaths[0] < WINDOW:
                logger.error(
                    "worker %d (pid %d) %s: workers died %d times within %.0f s; stopping",
                    slot,
                    process.pid,
                    how,
                    len(self.deaths),
                    WINDOW,
                )
                self.end("failed")
                return
            logger.error("worker %d (pid %d) %s; starting a new one", slot, process.pid, how)

    async def _stop(self, process: trio.Process) -> None:
        """Stop one worker with the chosen signal; SIGKILL past the deadline."""
        with contextlib.suppress(ProcessLookupError):  # it has just exited
            process.send_signal(self._stop_signal)
        with trio.move_on_after(self.shutdown_timeout + 5):
            await process.wait()
            return
        logger.error("worker pid %d did not stop in time: killing it", process.pid)
        process.kill()
        await process.wait()
