"""Tests for gatehouse.auth.passwords: argon2id hashes and the lock after repeated failures
(what is stored is read back through services.passwords, never by key)."""

from __future__ import annotations

import asyncio
import datetime as dt
import re
from pathlib import Path
from typing import Literal

import argon2
import pytest

from gatehouse.auth import passwords
from gatehouse.auth.passwords import LOCK_AFTER, LOCK_FOR, MIN_LENGTH, Passwords
from gatehouse.backend import Backend, open_backend
from gatehouse.clock import FakeClock
from gatehouse.errors import AccessDenied, BadParameter, LimitExceeded
from gatehouse.services.passwords import PasswordStore

GOOD = "correct horse battery"
BAD = "wrong horse battery!"
SECOND = dt.timedelta(seconds=1)


@pytest.fixture
async def store(backend: Backend, clock: FakeClock, fast_hashing: None) -> Passwords:
    store = Passwords(PasswordStore(backend), clock)
    await store.set("alice", GOOD)
    return store


async def fail(store: Passwords, user: str = "alice", times: int = 1) -> None:
    for _ in range(times):
        with pytest.raises(AccessDenied, match="invalid user name or password"):
            await store.check(user, BAD)


async def test_set_stores_an_argon2id_hash_that_checks(backend: Backend, clock: FakeClock
                                                        ) -> None:
    store = Passwords(PasswordStore(backend), clock)  # the real, slow parameters, once
    await store.set("alice", GOOD)
    stored = await PasswordStore(backend).hash("alice")
    assert stored.startswith("$argon2id$")
    assert GOOD not in stored
    params = argon2.extract_parameters(stored)
    assert (params.memory_cost, params.time_cost, params.parallelism) == (47_104, 1, 1)
    await store.check("alice", GOOD)


async def test_a_hash_with_other_parameters_is_replaced_at_the_next_login(
    backend: Backend, store: Passwords,
) -> None:
    hashes = PasswordStore(backend)
    await hashes.set_hash("alice", argon2.PasswordHasher().hash(GOOD))  # older parameters
    await fail(store)
    assert argon2.extract_parameters(await hashes.hash("alice")).memory_cost == 65_536
    await store.check("alice", GOOD)
    replaced = await hashes.hash("alice")
    assert argon2.extract_parameters(replaced) == argon2.extract_parameters(
        passwords._hasher.hash(GOOD))
    await store.check("alice", GOOD)
    assert await hashes.hash("alice") == replaced  # once


async def test_a_password_set_meanwhile_is_not_replaced_by_the_old_ones_hash(
    backend: Backend, store: Passwords,
) -> None:
    hashes = PasswordStore(backend)
    before = await hashes.hash("alice")
    await store.set("alice", "a newer password, set by an admin")
    assert not await hashes.replace_hash("alice", before, "$argon2id$stale")
    await store.check("alice", "a newer password, set by an admin")


async def test_right_password_passes(store: Passwords) -> None:
    await store.check("alice", GOOD)
    await store.check("alice", GOOD)


@pytest.mark.parametrize("password", [BAD, "", GOOD.upper(), GOOD + " ", GOOD[:-1]])
async def test_wrong_password_is_denied(store: Passwords, password: str) -> None:
    with pytest.raises(AccessDenied, match="invalid user name or password"):
        await store.check("alice", password)


async def test_short_password_is_refused(backend: Backend, clock: FakeClock, fast_hashing: None
                                         ) -> None:
    store = Passwords(PasswordStore(backend), clock)
    with pytest.raises(BadParameter, match=f"at least {MIN_LENGTH} characters"):
        await store.set("bob", "x" * (MIN_LENGTH - 1))
    assert await PasswordStore(backend).hash("bob") == ""
    await store.set("bob", "x" * MIN_LENGTH)
    await store.check("bob", "x" * MIN_LENGTH)


async def test_a_short_password_leaves_the_old_one_in_place(store: Passwords) -> None:
    with pytest.raises(BadParameter):
        await store.set("alice", "short")
    await store.check("alice", GOOD)


async def test_set_replaces_the_password(store: Passwords) -> None:
    await store.set("alice", "another long password")
    await store.check("alice", "another long password")
    with pytest.raises(AccessDenied):
        await store.check("alice", GOOD)


async def test_five_failures_lock_even_the_right_password(store: Passwords,
                                                          clock: FakeClock) -> None:
    await fail(store, times=LOCK_AFTER - 1)
    await store.check("alice", GOOD)  # four failures do not lock
    await fail(store)
    until = (clock.now() + LOCK_FOR).isoformat(timespec="seconds")
    message = f"user alice is locked after {LOCK_AFTER} failed logins until {until}"
    with pytest.raises(LimitExceeded, match=re.escape(message)):
        await store.check("alice", GOOD)
    with pytest.raises(LimitExceeded):
        await store.check("alice", BAD)


async def test_lock_expires_after_lock_for(store: Passwords, clock: FakeClock) -> None:
    await fail(store, times=LOCK_AFTER)
    clock.advance(LOCK_FOR - SECOND)
    with pytest.raises(LimitExceeded):
        await store.check("alice", GOOD)
    clock.advance(SECOND)
    await store.check("alice", GOOD)
    await fail(store, times=LOCK_AFTER - 1)  # the count started again from zero
    await store.check("alice", GOOD)


async def test_lock_runs_from_the_last_failure(store: Passwords, clock: FakeClock) -> None:
    await fail(store, times=LOCK_AFTER - 1)
    clock.advance(dt.timedelta(minutes=5))
    await fail(store)
    clock.advance(LOCK_FOR - SECOND)
    with pytest.raises(LimitExceeded):
        await store.check("alice", GOOD)
    clock.advance(SECOND)
    await store.check("alice", GOOD)


async def test_attempts_while_locked_do_not_extend_the_lock(store: Passwords,
                                                            clock: FakeClock) -> None:
    await fail(store, times=LOCK_AFTER)
    for _ in range(3):
        clock.advance(LOCK_FOR / 4)
        with pytest.raises(LimitExceeded):
            await store.check("alice", BAD)
    clock.advance(LOCK_FOR / 4)
    await store.check("alice", GOOD)


async def test_lock_expiry_is_the_failure_items_expiry(store: Passwords, backend: Backend,
                                                       clock: FakeClock) -> None:
    await fail(store, times=LOCK_AFTER)
    assert await PasswordStore(backend).locked_until("alice") == clock.now() + LOCK_FOR
    clock.advance(LOCK_FOR)
    assert await PasswordStore(backend).locked_until("alice") is None  # before any sweep
    assert await backend.sweep_expired() == 1 + LOCK_AFTER  # the lock and each failure


async def test_old_failures_are_forgotten(store: Passwords, clock: FakeClock) -> None:
    await fail(store, times=LOCK_AFTER - 1)
    clock.advance(LOCK_FOR)
    await fail(store, times=LOCK_AFTER - 1)
    await store.check("alice", GOOD)


async def test_success_alone_keeps_failures_until_cleared(store: Passwords) -> None:
    # check() leaves clearing to the caller, which knows when every factor has passed.
    await fail(store, times=LOCK_AFTER - 1)
    await store.check("alice", GOOD)
    await fail(store)
    with pytest.raises(LimitExceeded):
        await store.check("alice", GOOD)


async def test_clear_failures_resets_the_count(store: Passwords) -> None:
    await fail(store, times=LOCK_AFTER - 1)
    await store.check("alice", GOOD)
    await store.clear_failures("alice")
    await fail(store, times=LOCK_AFTER - 1)
    await store.check("alice", GOOD)
    await store.clear_failures("nobody")  # nothing to clear is fine


async def test_setting_a_password_unlocks(store: Passwords) -> None:
    await fail(store, times=LOCK_AFTER)
    await store.set("alice", "a brand new password")
    await store.check("alice", "a brand new password")


async def test_record_failure_counts_like_a_wrong_password(store: Passwords) -> None:
    for _ in range(LOCK_AFTER):
        await store.record_failure("alice")
    with pytest.raises(LimitExceeded):
        await store.check("alice", GOOD)


async def test_unknown_user_is_denied_like_a_wrong_password(store: Passwords) -> None:
    with pytest.raises(AccessDenied) as unknown:
        await store.check("mallory", GOOD)
    with pytest.raises(AccessDenied) as wrong:
        await store.check("alice", BAD)
    assert str(unknown.value) == str(wrong.value)


@pytest.mark.parametrize("name", ["alice/0", "alice/", "", "../alice", "x" * 254, "al ice"])
async def test_a_name_that_is_no_name_is_denied_like_an_unknown_user_before_any_store(
        store: Passwords, backend: Backend, monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    checked: list[str] = []

    class Counting(argon2.PasswordHasher):
        def verify(self, hash: str | bytes, password: str | bytes) -> Literal[True]:
            checked.append(str(hash))  # the cost of a check, as for anyone
            return super().verify(hash, password)

    monkeypatch.setattr(passwords, "_hasher",
                        Counting(time_cost=1, memory_cost=8, parallelism=1))
    before = await backend.get_range(b"/", b"0")
    for _ in range(LOCK_AFTER + 1):
        with pytest.raises(AccessDenied) as refused:
            await store.check(name, GOOD)
        assert str(refused.value) == "invalid user name or password"
    assert len(checked) == LOCK_AFTER + 1
    assert await backend.get_range(b"/", b"0") == before  # no attempt, no lock
    await store.check("alice", GOOD)


async def test_unknown_user_counts_failures_and_locks(store: Passwords) -> None:
    await fail(store, "mallory", times=LOCK_AFTER)
    with pytest.raises(LimitExceeded, match="user mallory is locked"):
        await store.check("mallory", GOOD)
    await store.check("alice", GOOD)  # other users are not affected


async def test_failures_are_per_user(store: Passwords) -> None:
    await store.set("bob", "bob's long password")
    await fail(store, "bob", times=LOCK_AFTER)
    await store.check("alice", GOOD)
    with pytest.raises(LimitExceeded):
        await store.check("bob", "bob's long password")


async def test_delete_removes_password_and_failures(store: Passwords, backend: Backend
                                                    ) -> None:
    await fail(store, times=2)
    await store.delete("alice")
    stored = PasswordStore(backend)
    assert (await stored.hash("alice"), await stored.count_attempts("alice")) == ("", 0)
    with pytest.raises(AccessDenied):
        await store.check("alice", GOOD)
    await store.delete("alice")  # twice is fine


async def test_a_corrupt_stored_hash_is_denied(store: Passwords, backend: Backend) -> None:
    await PasswordStore(backend).set_hash("alice", "not a hash")
    with pytest.raises(AccessDenied):
        await store.check("alice", GOOD)


async def test_concurrent_guesses_cannot_bypass_the_lock(tmp_path: Path, clock: FakeClock,
                                                         fast_hashing: None) -> None:
    backend = await open_backend("sqlite", path=tmp_path / "backend.sqlite", clock=clock)
    try:
        store = Passwords(PasswordStore(backend), clock)
        await store.set("alice", GOOD)
        results = await asyncio.gather(
            *(store.check("alice", f"guess number {i:04d}") for i in range(4 * LOCK_AFTER)),
            return_exceptions=True,
        )
        checked = sum(isinstance(r, AccessDenied) for r in results)
        locked = sum(isinstance(r, LimitExceeded) for r in results)
        assert checked + locked == len(results)
        assert checked <= LOCK_AFTER
        with pytest.raises(LimitExceeded):
            await store.check("alice", GOOD)
    finally:
        await backend.close()
