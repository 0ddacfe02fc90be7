"""Fixtures of the auth tests: a fake clock, an in-memory backend, an auth server on it,
and cheap password hashing."""

from __future__ import annotations

from collections.abc import AsyncIterator

import argon2
import pytest

from gatehouse.auth import passwords
from gatehouse.auth.server import AuthServer
from gatehouse.backend import Backend, open_backend
from gatehouse.clock import FakeClock
from tests.auth.samples import CLUSTER


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def backend(clock: FakeClock) -> AsyncIterator[Backend]:
    backend = await open_backend("memory", path=None, clock=clock)
    yield backend
    await backend.close()


@pytest.fixture
async def server(backend: Backend, clock: FakeClock) -> AuthServer:
    return await AuthServer.open(backend, clock, CLUSTER)


@pytest.fixture
def fast_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    """The default argon2 parameters cost ~0.2 s a hash; tests need the logic, not the cost."""
    monkeypatch.setattr(passwords, "_hasher",
                        argon2.PasswordHasher(time_cost=1, memory_cost=8, parallelism=1))
