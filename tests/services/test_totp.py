"""The TOTP store: a secret per user, and a used step recorded only over what was read."""

from __future__ import annotations

import pytest

from gatehouse.backend import Backend
from gatehouse.errors import NotFound
from gatehouse.services.totp import TOTPStore


async def test_a_secret_starts_with_no_step_used(backend: Backend) -> None:
    store = TOTPStore(backend)
    with pytest.raises(NotFound):
        await store.get("alice")
    await store.put("alice", "JBSWY3DPEHPK3PXP")
    stored = await store.get("alice")
    assert (stored.secret, stored.last) == ("JBSWY3DPEHPK3PXP", 0)
    await store.remove("alice")
    await store.remove("alice")  # none is fine
    with pytest.raises(NotFound):
        await store.get("alice")


async def test_two_logins_reading_the_same_state_cannot_both_use_a_step(backend: Backend
                                                                       ) -> None:
    store = TOTPStore(backend)
    await store.put("alice", "JBSWY3DPEHPK3PXP")
    first, second = await store.get("alice"), await store.get("alice")
    assert await store.mark_used(first, 7)
    assert not await store.mark_used(second, 7)
    assert (await store.get("alice")).last == 7


async def test_re_enrolment_between_read_and_use_wins(backend: Backend) -> None:
    store = TOTPStore(backend)
    await store.put("alice", "JBSWY3DPEHPK3PXP")
    read = await store.get("alice")
    await store.put("alice", "KRSXG5CTMVRXEZLU")
    assert not await store.mark_used(read, 7)
    assert (await store.get("alice")).secret == "KRSXG5CTMVRXEZLU"
