"""SSO logins in flight: a login waiting for the IdP's callback (by its ``state``) and a
finished one waiting for its client (by request id). Each is taken once: whoever
deletes it first has it, so a replayed callback or a second fetch finds nothing."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from gatehouse.backend import Backend, Item
from gatehouse.errors import BadParameter, NotFound

__all__ = ["SSOStore"]

_PENDING = "/sso/pending/"
_DONE = "/sso/done/"
_DEVICE = "/sso/device/"


class SSOStore:
    def __init__(self, backend: Backend) -> None:
        self._backend = backend

    @staticmethod
    def _key(prefix: str, name: str) -> bytes:
        if not name or "/" in name or len(name) > 128:
            raise BadParameter("malformed SSO login reference")
        return (prefix + name).encode()

    async def _put(self, key: bytes, value: dict[str, Any], expires: dt.datetime) -> None:
        await self._backend.create(Item(key=key, value=json.dumps(value).encode(),
                                        expires=expires))

    async def _take(self, key: bytes) -> dict[str, Any]:
        item = await self._backend.get(key)
        await self._backend.delete(key)  # NotFound: someone else took it first
        value: dict[str, Any] = json.loads(item.value)
        return value

    async def put_pending(self, state: str, login: dict[str, Any], expires: dt.datetime) -> None:
        await self._put(self._key(_PENDING, state), login, expires)

    async def take_pending(self, state: str) -> dict[str, Any]:
        """The login waiting under ``state``, once; NotFound if none (used, expired, never)."""
        try:
            return await self._take(self._key(_PENDING, state))
        except (NotFound, BadParameter):
            raise NotFound("unknown, expired or already used login state") from None

    async def put_device(self, request_id: str, login: dict[str, Any],
                         expires: dt.datetime) -> None:
        await self._put(self._key(_DEVICE, request_id), login, expires)

    async def get_device(self, request_id: str) -> dict[str, Any]:
        """A device login still being polled; NotFound if none (ended, expired, never)."""
        try:
            item = await self._backend.get(self._key(_DEVICE, request_id))
        except (NotFound, BadParameter):
            raise NotFound("unknown, expired or finished device login") from None
        value: dict[str, Any] = json.loads(item.value)
        return value

    async def end_device(self, request_id: str) -> None:
        """End a device login; NotFound if another poll ended it first."""
        try:
            await self._backend.delete(self._key(_DEVICE, request_id))
        except NotFound:
            raise NotFound("unknown, expired or finished device login") from None

    async def put_done(self, request_id: str, result: dict[str, Any],
                       expires: dt.datetime) -> None:
        await self._put(self._key(_DONE, request_id), result, expires)

    async def take_done(self, request_id: str) -> dict[str, Any]:
        """The outcome of login ``request_id``, once; NotFound if none."""
        try:
            return await self._take(self._key(_DONE, request_id))
        except (NotFound, BadParameter):
            raise NotFound("unknown, expired or already fetched SSO login") from None
