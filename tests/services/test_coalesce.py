"""Writes gathered into shared atomic writes: a writer hears its own outcome, and a
batch closes at its count or its size. On the memory backend."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gatehouse.backend import Backend, Item, Write, open_backend
from gatehouse.clock import FakeClock
from gatehouse.errors import BadParameter, ConnectionProblem
from gatehouse.services._coalesce import Coalescer
from tests.services.reads import CountingWrites


@pytest.fixture
async def backend(tmp_path: Path) -> AsyncIterator[Backend]:
    backend = await open_backend("memory", path=tmp_path / "b.db", clock=FakeClock())
    yield backend
    await backend.close()


def _puts(*keys: str, size: int = 1) -> list[Write]:
    return [Write(k.encode(), Item(k.encode(), b"x" * size)) for k in keys]


async def test_a_group_that_cannot_be_written_fails_only_its_own_writer(
        backend: Backend) -> None:
    coalescer = Coalescer(backend, window=0.05, most=10)
    bad = _puts("/n/bad", "/n/bad")  # the same key twice: the backend refuses it
    results = await asyncio.gather(
        coalescer.write("a", _puts("/n/a")), coalescer.write("bad", bad),
        coalescer.write("b", _puts("/n/b")), return_exceptions=True)
    assert results[0] is None and results[2] is None
    assert isinstance(results[1], BadParameter)
    assert [i.key for i in await backend.get_range(b"/n/", b"/n0")] == [b"/n/a", b"/n/b"]


async def test_an_unreachable_backend_fails_every_writer_once(backend: Backend) -> None:
    counting = CountingWrites(backend)
    coalescer = Coalescer(counting, window=0.05, most=10)  # type: ignore[arg-type]
    await backend.close()
    results = await asyncio.gather(*(coalescer.write(g, _puts(f"/n/{g}")) for g in "abc"),
                                   return_exceptions=True)
    assert all(isinstance(r, ConnectionProblem) for r in results), results
    assert counting.writes == 1  # not tried again group by group


async def test_a_batch_closes_at_its_size(backend: Backend) -> None:
    counting = CountingWrites(backend)
    coalescer = Coalescer(counting, window=10.0, most=100,  # type: ignore[arg-type]
                          most_bytes=3000)
    await asyncio.wait_for(asyncio.gather(
        *(coalescer.write(g, _puts(f"/n/{g}", size=1000)) for g in "abc")), 5.0)
    assert counting.writes == 1  # full at 3 groups: written without the 10 s wait
