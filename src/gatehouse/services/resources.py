"""Typed resources <-> backend items, one store per kind (only this layer knows keys)."""

from __future__ import annotations

from typing import Generic, TypeVar

from pydantic import ValidationError

from gatehouse.backend import Backend, Item, Write, prefix_end
from gatehouse.errors import AlreadyExists, BadParameter, NotFound
from gatehouse.types.resource import Resource

__all__ = ["ResourceStore", "kind_prefix"]

R = TypeVar("R", bound=Resource)


def kind_prefix(kind: str) -> bytes:
    """Where the resources of ``kind`` are kept: every key starts with this (its plural)."""
    return f"/{kind[:-1]}ies/".encode() if kind.endswith("y") else f"/{kind}s/".encode()


class ResourceStore(Generic[R]):
    def __init__(self, backend: Backend, kind: str, model: type[R]) -> None:
        self._backend = backend
        self.kind = kind
        self._model = model
        self._prefix = kind_prefix(kind)

    def _key(self, name: str) -> bytes:
        if not name or "/" in name:
            raise BadParameter(f"invalid {self.kind} name {name!r}")
        return self._prefix + name.encode()

    def create_write(self, res: R) -> Write:
        """Creating ``res`` as one write of an atomic_write (fails if it exists)."""
        return Write(self._key(res.metadata.name), self._item(res), expect_revision=0)

    def delete_write(self, name: str) -> Write:
        """Removing ``name``, if it is there, as one write of an atomic_write."""
        return Write(self._key(name))

    def _item(self, res: R) -> Item:
        return Item(
            key=self._key(res.metadata.name),
            value=res.model_dump_json().encode(),
            expires=res.metadata.expires,
        )

    def _load(self, item: Item) -> R:
        try:
            return self._model.model_validate_json(item.value)
        except ValidationError as exc:  # stored by an older or newer version
            raise BadParameter(f"stored {self.kind} {item.key.decode()} is unreadable") from exc

    async def get(self, name: str) -> R:
        try:
            return self._load(await self._backend.get(self._key(name)))
        except NotFound:
            raise NotFound(f"{self.kind} {name} not found") from None

    async def list(self, limit: int = 0) -> list[R]:
        items = await self._backend.get_range(self._prefix, prefix_end(self._prefix), limit)
        return [self._load(i) for i in items]

    async def create(self, res: R) -> R:
        try:
            await self._backend.create(self._item(res))
        except AlreadyExists:
            raise AlreadyExists(f"{self.kind} {res.metadata.name} already exists") from None
        return res

    async def upsert(self, res: R) -> R:
        await self._backend.put(self._item(res))
        return res

    async def update(self, res: R) -> R:
        try:
            await self._backend.update(self._item(res))
        except NotFound:
            raise NotFound(f"{self.kind} {res.metadata.name} not found") from None
        return res

    async def delete(self, name: str) -> None:
        try:
            await self._backend.delete(self._key(name))
        except NotFound:
            raise NotFound(f"{self.kind} {name} not found") from None
