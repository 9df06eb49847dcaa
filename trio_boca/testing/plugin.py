"""pytest fixtures for trio_boca apps (registered as the `trio_boca` plugin).

Define an `app` fixture in your tests; these build on it:

- `client`: an in-process `TestClient(app)`, open for the test;
- `live_server`: a `LiveServer(app)` on a free loopback port.

They are async fixtures: run the tests with pytest-trio (`trio_mode = true`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from ._client import TestClient
from ._live import LiveServer


@pytest.fixture
async def client(app: Any) -> AsyncIterator[TestClient]:
    async with TestClient(app) as test_client:
        yield test_client


@pytest.fixture
async def live_server(app: Any) -> AsyncIterator[LiveServer]:
    async with LiveServer(app) as server:
        yield server
