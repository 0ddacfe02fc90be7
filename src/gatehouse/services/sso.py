"""SSO logins in flight: a login waiting for the IdP's callback (by its ``state``) and a
finished one waiting for its client (by request id). Each is taken once: whoever
deletes it first has it, so a replayed callback or a second fetch finds nothing.

And the names SSO users hold: an SSO user has no user record, but while a certificate
of theirs is valid their name is taken (a local user may not have it); the item
expires with the latest such certificate."""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Callable
from typing import Any, TypeVar

from gatehouse.backend import Backend, Item
from gatehouse.errors import AlreadyExists, BadParameter, CompareFailed, NotFound
from gatehouse.types.resource import is_name

_T = TypeVar("_T")

__all__ = ["SSOStore"]

_PENDING = "/sso/pending/"
_DONE = "/sso/done/"
_DEVICE = "/sso/device/"
_NAMES = "/sso/names/"


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

    async def claim_poll(self, request_id: str, now: dt.datetime) -> tuple[bool, int]:
        """Whether a poll of device login ``request_id`` may reach the IdP now, and the
        seconds until the next may (RFC 8628 §3.5): the first caller at or after the time
        due wins (compare-and-swap) and moves it one interval on; NotFound if the login
        is gone."""
        def claim(login: dict[str, Any]) -> tuple[bool, tuple[bool, int]]:
            interval = int(login["interval"])
            due = dt.datetime.fromisoformat(login["next_poll"])
            if now < due:
                return False, (False, max(1, math.ceil((due - now).total_seconds())))
            login["next_poll"] = (now + dt.timedelta(seconds=interval)).isoformat()
            return True, (True, interval)

        return await self._edit_device(request_id, claim)

    async def slow_down(self, request_id: str, seconds: int, now: dt.datetime) -> int:
        """The IdP asked device login ``request_id`` to poll ``seconds`` slower: kept, and
        the next poll put off by the new interval. The new interval."""
        def slower(login: dict[str, Any]) -> tuple[bool, int]:
            login["interval"] = interval = int(login["interval"]) + seconds
            login["next_poll"] = (now + dt.timedelta(seconds=interval)).isoformat()
            return True, interval

        return await self._edit_device(request_id, slower)

    async def _edit_device(self, request_id: str,
                           edit: Callable[[dict[str, Any]], tuple[bool, _T]]) -> _T:
        """``edit`` device login ``request_id``'s record in place, by compare-and-swap;
        it says whether to write, and what to return."""
        key = self._key(_DEVICE, request_id)
        for _ in range(8):
            try:
                item = await self._backend.get(key)
            except NotFound:
                raise NotFound("unknown, expired or finished device login") from None
            login = json.loads(item.value)
            write, result = edit(login)
            if not write:
                return result
            try:
                await self._backend.compare_and_swap(item, Item(
                    key=key, value=json.dumps(login).encode(), expires=item.expires))
                return result
            except (CompareFailed, NotFound):
                continue
        raise CompareFailed(f"device login {request_id} changed under every attempt")

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

    @staticmethod
    def _name_key(user: str) -> bytes:
        if not is_name(user):
            raise BadParameter(f"invalid user name {user[:300]!r}")
        return (_NAMES + user).encode()

    async def hold_name(self, user: str, connector: str, until: dt.datetime) -> None:
        """``user`` logs in through ``connector`` with a certificate valid ``until``."""
        key = self._name_key(user)
        value = json.dumps({"connector": connector, "until": until.isoformat()}).encode()
        for _ in range(8):  # a concurrent login of the same user: the later end wins
            try:
                held = await self._backend.get(key)
            except NotFound:
                try:
                    await self._backend.create(Item(key=key, value=value, expires=until))
                    return
                except AlreadyExists:
                    continue
            if held.expires is not None and held.expires >= until:
                return
            try:
                await self._backend.compare_and_swap(
                    held, Item(key=key, value=value, expires=until))
                return
            except (CompareFailed, NotFound):
                continue
        raise CompareFailed(f"SSO user {user}'s name changed under every attempt to hold it")

    async def name_holder(self, user: str) -> tuple[str, dt.datetime] | None:
        """(connector, until) of the SSO user named ``user`` with a valid certificate."""
        try:
            item = await self._backend.get(self._name_key(user))
        except NotFound:
            return None
        value = json.loads(item.value)
        return str(value["connector"]), dt.datetime.fromisoformat(value["until"])
