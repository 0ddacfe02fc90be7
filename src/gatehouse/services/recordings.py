"""Session recordings kept by the auth: uploaded by nodes in chunks, listed and read back.

A recording is stored as chunks of at most CHUNK bytes under its session id,
plus a metadata item under a prefix of its own, written last (a recording
without metadata is an upload in progress and is not listed; listing reads the
metadata items only, never the chunks). Session ids are canonical UUIDs:
anything else, such as a path, is refused before it reaches a key.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from gatehouse.backend import Backend, Item, Write, prefix_end
from gatehouse.errors import BadParameter, NotFound

__all__ = ["CHUNK", "MAX_RECORDING", "RecordingStore", "check_session_id"]

CHUNK = 1 << 20
MAX_RECORDING = 4 << 30
_PREFIX = "/recordings/"
_META = "/recording_meta/"
# A recording's metadata used to sit beside its chunks, as <_PREFIX>ID/meta.
_MOVED_META = b"/migrations/recording_meta"


def check_session_id(text: str) -> str:
    """The id if it is a canonical UUID; BadParameter (naming it) otherwise."""
    try:
        if str(uuid.UUID(text)) == text:
            return text
    except ValueError:
        pass
    raise BadParameter(f"{text[:80]!r} is not a session id (expected a UUID)")


class RecordingStore:
    def __init__(self, backend: Backend) -> None:
        self._backend = backend

    @staticmethod
    def _key(session_id: str, part: str) -> bytes:
        return f"{_PREFIX}{check_session_id(session_id)}/{part}".encode()

    @staticmethod
    def _meta_key(session_id: str) -> bytes:
        return f"{_META}{check_session_id(session_id)}".encode()

    async def move_old_metadata(self) -> int:
        """Once per backend: move metadata stored the old way beside its chunks to
        its own prefix (reading one chunk per recording to step past the rest);
        returns how many moved."""
        try:
            await self._backend.get(_MOVED_META)
            return 0
        except NotFound:
            pass
        moved, start, end = 0, _PREFIX.encode(), prefix_end(_PREFIX.encode())
        while found := await self._backend.get_range(start, end, limit=1):
            recording = found[0].key[:found[0].key.index(b"/", len(_PREFIX)) + 1]
            try:
                old = await self._backend.get(recording + b"meta")
            except NotFound:
                pass
            else:
                new = self._meta_key(recording[len(_PREFIX):-1].decode())
                await self._backend.atomic_write([Write(new, Item(new, old.value)),
                                                  Write(old.key, None)])
                moved += 1
            start = prefix_end(recording)
        await self._backend.put(Item(_MOVED_META, str(moved).encode()))
        return moved

    async def put_chunk(self, session_id: str, index: int, data: bytes) -> None:
        if not 0 <= index < MAX_RECORDING // CHUNK or len(data) > CHUNK:
            raise BadParameter(f"chunk {index} of {len(data)} bytes is out of bounds")
        await self._backend.put(Item(key=self._key(session_id, f"chunk/{index:06d}"),
                                     value=data))

    async def complete(self, session_id: str, meta: dict[str, Any]) -> None:
        """Mark an upload finished with the recording's metadata (from its header)."""
        await self._backend.put(Item(key=self._meta_key(session_id),
                                     value=json.dumps(meta).encode()))

    async def meta(self, session_id: str) -> dict[str, Any]:
        try:
            item = await self._backend.get(self._meta_key(session_id))
        except NotFound:
            raise NotFound(f"recording {session_id} not found") from None
        return dict(json.loads(item.value))

    async def list(self) -> list[dict[str, Any]]:
        start = _META.encode()
        items = await self._backend.get_range(start, prefix_end(start))
        return [json.loads(i.value) for i in items]

    async def read(self, session_id: str) -> bytes:
        await self.meta(session_id)  # NotFound for an unknown or unfinished recording
        prefix = self._key(session_id, "chunk/")
        return b"".join(i.value for i in await self._backend.get_range(prefix,
                                                                       prefix_end(prefix)))
