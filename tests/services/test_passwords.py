"""The password store: hashes, attempts that expire one by one, a lock that keeps its end."""

from __future__ import annotations

import datetime as dt

import pytest

from gatehouse.backend import Backend
from gatehouse.clock import FakeClock
from gatehouse.errors import BadParameter
from gatehouse.services.passwords import PasswordStore
from tests.services.reads import CountingWrites

MINUTE = dt.timedelta(minutes=1)


async def test_a_hash_is_kept_until_deleted(backend: Backend) -> None:
    store = PasswordStore(backend)
    assert await store.hash("alice") == ""
    await store.set_hash("alice", "$argon2id$...")
    assert await store.hash("alice") == "$argon2id$..."
    await store.delete_hash("alice")
    await store.delete_hash("alice")  # none is fine
    assert await store.hash("alice") == ""


async def test_attempts_count_until_each_expires_or_is_taken_back(backend: Backend,
                                                                  clock: FakeClock) -> None:
    store = PasswordStore(backend)
    await store.add_attempt("alice", clock.now() + MINUTE)
    second = await store.add_attempt("alice", clock.now() + 2 * MINUTE)
    await store.add_attempt("bob", clock.now() + MINUTE)
    assert await store.count_attempts("alice") == 2
    clock.advance(MINUTE)
    assert await store.count_attempts("alice") == 1
    await store.take_back_attempt("alice", second)
    await store.take_back_attempt("alice", second)  # gone already is fine
    assert (await store.count_attempts("alice"), await store.count_attempts("bob")) == (0, 0)


async def test_a_lock_keeps_the_end_it_was_set_with(backend: Backend, clock: FakeClock) -> None:
    store = PasswordStore(backend)
    assert await store.locked_until("alice") is None
    until = clock.now() + 2 * MINUTE
    await store.lock("alice", until)
    await store.lock("alice", until + MINUTE)  # held already: it does not move
    assert await store.locked_until("alice") == until
    clock.advance(2 * MINUTE)
    assert await store.locked_until("alice") is None


async def test_clearing_forgets_attempts_and_lifts_the_lock(backend: Backend,
                                                            clock: FakeClock) -> None:
    store = PasswordStore(backend)
    await store.add_attempt("alice", clock.now() + MINUTE)
    await store.lock("alice", clock.now() + MINUTE)
    await store.clear_attempts("alice")
    assert await store.count_attempts("alice") == 0
    assert await store.locked_until("alice") is None
    await store.clear_attempts("nobody")


async def test_clearing_nothing_writes_nothing(backend: Backend, clock: FakeClock) -> None:
    counted = CountingWrites(backend)
    store = PasswordStore(counted)  # type: ignore[arg-type]
    await store.clear_attempts("alice")
    assert counted.writes == 0
    await store.add_attempt("alice", clock.now() + MINUTE)
    await store.lock("alice", clock.now() + MINUTE)
    before = counted.writes
    await store.clear_attempts("alice")
    assert counted.writes == before + 2
    assert (await store.count_attempts("alice"), await store.locked_until("alice")) == (0, None)


async def test_a_key_is_made_of_a_name_only(backend: Backend, clock: FakeClock) -> None:
    """bob/0's attempts would be counted as bob's: a key is never made of a non-name."""
    store = PasswordStore(backend)
    with pytest.raises(BadParameter, match=r"^user name 'bob/0': use letters, digits"):
        await store.add_attempt("bob/0", clock.now() + MINUTE)
    with pytest.raises(BadParameter, match=r"^user name 'xxxx+'\.\.\.: use letters"):
        await store.hash("x" * 5000)
    assert not await backend.get_range(b"/", b"0")
