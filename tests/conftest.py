"""Fixtures every unit test may use: a fake clock and an in-memory backend on it."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator

import pytest

from gatehouse.backend import Backend, open_backend
from gatehouse.clock import FakeClock


@pytest.fixture
def clock() -> FakeClock:
    # Starts at the real time: certificates issued on it also meet real TLS stacks,
    # which check validity against the system clock.
    return FakeClock(dt.datetime.now(dt.UTC).replace(microsecond=0))


@pytest.fixture
async def backend(clock: FakeClock) -> AsyncIterator[Backend]:
    backend = await open_backend("memory", path=None, clock=clock)
    yield backend
    await backend.close()
