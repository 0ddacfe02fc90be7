"""Session recordings kept by the auth: uploaded by nodes in chunks, listed and read back.

A recording is stored as chunks of at most CHUNK bytes under its session id,
plus a metadata item written last (a recording without metadata is an upload
in progress and is not listed). Session ids are canonical UUIDs: anything
else, such as a path, is refused before it reaches a key.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from gatehouse.backend import Backend, Item, prefix_end
from gatehouse.errors import BadParameter, NotFound

__all__ = ["CHUNK", "MAX_RECORDING", "RecordingStore", "check_session_id"]

CHUNK = 1 << 20
MAX_RECORDING = 4 << 30
_PREFIX = "/recordings/"


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

    async def put_chunk(self, session_id: str, index: int, data: bytes) -> None:
        if not 0 <= index < MAX_RECORDING // CHUNK or len(data) > CHUNK:
            raise BadParameter(f"chunk {index} of {len(data)} bytes is out of bounds")
        await self._backend.put(Item(key=self._key(session_id, f"chunk/{index:06d}"),
                                     value=data))

    async def complete(self, session_id: str, meta: dict[str, Any]) -> None:
        """Mark an upload finished with the recording's metadata (from its header)."""
        await self._backend.put(Item(key=self._key(session_id, "meta"),
                                     value=json.dumps(meta).encode()))

    async def meta(self, session_id: str) -> dict[str, Any]:
        try:
            item = await self._backend.get(self._key(session_id, "meta"))
        except NotFound:
            raise NotFound(f"recording {session_id} not found") from None
        return dict(json.loads(item.value))

    async def list(self) -> list[dict[str, Any]]:
        start = _PREFIX.encode()
        items = await self._backend.get_range(start, prefix_end(start))
        return [json.loads(i.value) for i in items if i.key.endswith(b"/meta")]

    async def read(self, session_id: str) -> bytes:
        await self.meta(session_id)  # NotFound for an unknown or unfinished recording
        prefix = self._key(session_id, "chunk/")
        return b"".join(i.value for i in await self._backend.get_range(prefix,
                                                                       prefix_end(prefix)))
