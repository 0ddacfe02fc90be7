"""Optional second factor: RFC 6238 time-based one-time codes (pyotp), one use per code.

A code is accepted within one step of drift either way, once: a step at or before
the last used one is refused. The secrets are kept by services.totp.
"""

from __future__ import annotations

import pyotp

from gatehouse.clock import Clock
from gatehouse.errors import AccessDenied, NotFound
from gatehouse.services.totp import TOTPStore

__all__ = ["STEP", "OneTimeCodes"]

STEP = 30


class OneTimeCodes:
    def __init__(self, store: TOTPStore, clock: Clock, issuer: str) -> None:
        self._store = store
        self._clock = clock
        self._issuer = issuer

    async def enroll(self, user: str) -> str:
        """A new secret for ``user`` (replacing any old one); returns the otpauth:// URI."""
        secret = pyotp.random_base32()
        await self._store.put(user, secret)
        return str(pyotp.TOTP(secret, interval=STEP).provisioning_uri(
            name=user, issuer_name=self._issuer))

    async def remove(self, user: str) -> None:
        await self._store.remove(user)

    async def enrolled(self, user: str) -> bool:
        try:
            await self._store.get(user)
        except NotFound:
            return False
        return True

    async def check(self, user: str, code: str) -> None:
        """Accept a current code (one step of drift either way) that was not used before."""
        stored = await self._store.get(user)
        totp = pyotp.TOTP(stored.secret, interval=STEP)
        counter = int(self._clock.now().timestamp()) // STEP
        for step in (counter - 1, counter, counter + 1):
            if step > stored.last and code.strip() == totp.at(step * STEP):
                if not await self._store.mark_used(stored, step):
                    break  # another login used a code meanwhile
                return
        raise AccessDenied("invalid or already used one-time code")
