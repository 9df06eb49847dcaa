"""Objects used as `async with obj:` whose life is one async generator.

TestClient, LiveServer and Broadcast each open a nursery for as long as they
are in use. Written as `_running()`, an @asynccontextmanager, the nursery is
entered and left in the right order on every road; this base class lets
`async with obj:` drive it, and hands the caller the one real error rather
than the group the nursery wrapped it in.
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager, AsyncExitStack
from types import TracebackType
from typing import TypeVar

Self = TypeVar("Self", bound="Running")


class Running:
    _stack: AsyncExitStack | None = None

    def _running(self) -> AbstractAsyncContextManager[object]:
        raise NotImplementedError

    async def __aenter__(self: Self) -> Self:
        if self._stack is not None:
            raise RuntimeError(f"this {type(self).__name__} is already in use")
        stack = AsyncExitStack()
        await stack.enter_async_context(self._running())
        self._stack = stack
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        stack, self._stack = self._stack, None
        assert stack is not None
        return await stack.__aexit__(exc_type, exc, tb)
