"""Fixtures every unit test may use: a fake clock and an in-memory backend on it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from gatehouse.backend import Backend, open_backend
from gatehouse.clock import FakeClock


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def backend(clock: FakeClock) -> AsyncIterator[Backend]:
    backend = await open_backend("memory", path=None, clock=clock)
    yield backend
    await backend.close()
