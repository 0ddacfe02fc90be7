"""Second factor: codes verify once, within one step of drift, and only for the right secret."""

from __future__ import annotations

import datetime as dt
import urllib.parse

import pyotp
import pytest

from gatehouse.auth.totp import STEP, OneTimeCodes
from gatehouse.backend import open_backend
from gatehouse.clock import FakeClock
from gatehouse.errors import AccessDenied
from gatehouse.services.totp import TOTPStore


def _secret(uri: str) -> str:
    return urllib.parse.parse_qs(urllib.parse.urlparse(uri).query)["secret"][0]


@pytest.fixture
async def store() -> tuple[OneTimeCodes, FakeClock]:
    clock = FakeClock()
    backend = await open_backend("memory", path=None, clock=clock)
    return OneTimeCodes(TOTPStore(backend), clock, issuer="Gatehouse test"), clock


async def test_enroll_then_code_verifies_once(store: tuple[OneTimeCodes, FakeClock]) -> None:
    totp, clock = store
    uri = await totp.enroll("alice")
    assert uri.startswith("otpauth://totp/") and "alice" in uri
    code = pyotp.TOTP(_secret(uri), interval=STEP).at(clock.now())
    await totp.check("alice", code)
    with pytest.raises(AccessDenied, match="already used"):
        await totp.check("alice", code)


async def test_drift_of_one_step_is_accepted_two_is_not(
        store: tuple[OneTimeCodes, FakeClock]) -> None:
    totp, clock = store
    gen = pyotp.TOTP(_secret(await totp.enroll("alice")), interval=STEP)
    previous = gen.at(clock.now() - dt.timedelta(seconds=STEP))
    await totp.check("alice", previous)
    stale = gen.at(clock.now() - dt.timedelta(seconds=3 * STEP))
    clock.advance(dt.timedelta(seconds=STEP))
    with pytest.raises(AccessDenied):
        await totp.check("alice", stale)


async def test_wrong_secret_and_removal(store: tuple[OneTimeCodes, FakeClock]) -> None:
    totp, clock = store
    await totp.enroll("alice")
    other = pyotp.TOTP(pyotp.random_base32(), interval=STEP).at(clock.now())
    with pytest.raises(AccessDenied):
        await totp.check("alice", other)
    assert await totp.enrolled("alice")
    await totp.remove("alice")
    assert not await totp.enrolled("alice")


async def test_reenroll_replaces_secret(store: tuple[OneTimeCodes, FakeClock]) -> None:
    totp, clock = store
    old = pyotp.TOTP(_secret(await totp.enroll("alice")), interval=STEP)
    await totp.enroll("alice")
    with pytest.raises(AccessDenied):
        await totp.check("alice", old.at(clock.now()))
