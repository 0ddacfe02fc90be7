"""Optional second factor: RFC 6238 time-based one-time codes (pyotp), one use per code."""

from __future__ import annotations

import contextlib
import json

import pyotp

from gatehouse.backend import Backend, Item
from gatehouse.clock import Clock
from gatehouse.errors import AccessDenied, CompareFailed, NotFound

__all__ = ["TOTPStore"]

STEP = 30


class TOTPStore:
    def __init__(self, backend: Backend, clock: Clock, issuer: str) -> None:
        self._backend = backend
        self._clock = clock
        self._issuer = issuer

    def _key(self, user: str) -> bytes:
        return f"/totp/{user}".encode()

    async def enroll(self, user: str) -> str:
        """A new secret for ``user`` (replacing any old one); returns the otpauth:// URI."""
        secret = pyotp.random_base32()
        await self._backend.put(
            Item(key=self._key(user), value=json.dumps({"secret": secret, "last": 0}).encode())
        )
        return str(pyotp.TOTP(secret, interval=STEP).provisioning_uri(
            name=user, issuer_name=self._issuer))

    async def remove(self, user: str) -> None:
        with contextlib.suppress(NotFound):
            await self._backend.delete(self._key(user))

    async def enrolled(self, user: str) -> bool:
        try:
            await self._backend.get(self._key(user))
        except NotFound:
            return False
        return True

    async def check(self, user: str, code: str) -> None:
        """Accept a current code (one step of drift either way) that was not used before."""
        item = await self._backend.get(self._key(user))
        state = json.loads(item.value)
        totp = pyotp.TOTP(state["secret"], interval=STEP)
        now = self._clock.now()
        counter = int(now.timestamp()) // STEP
        for step in (counter - 1, counter, counter + 1):
            if step > state["last"] and code.strip() == totp.at(step * STEP):
                state["last"] = step
                # Compare-and-swap: two logins racing with one code cannot both win.
                try:
                    await self._backend.compare_and_swap(
                        item, Item(key=item.key, value=json.dumps(state).encode()))
                except CompareFailed:
                    break
                return
        raise AccessDenied("invalid or already used one-time code")
