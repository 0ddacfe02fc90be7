"""The auth's recording store: chunked uploads, listing finished ones, safe ids."""

from __future__ import annotations

import uuid

import pytest

from gatehouse.backend import open_backend
from gatehouse.clock import FakeClock
from gatehouse.errors import BadParameter, NotFound
from gatehouse.services.recordings import CHUNK, RecordingStore, check_session_id


@pytest.fixture
async def store() -> RecordingStore:
    return RecordingStore(await open_backend("memory", path=None, clock=FakeClock()))


async def test_chunks_read_back_in_order_once_complete(store: RecordingStore) -> None:
    sid = str(uuid.uuid4())
    parts = [bytes([i]) * CHUNK for i in range(3)] + [b"tail"]
    for index, part in reversed(list(enumerate(parts))):  # arrival order does not matter
        await store.put_chunk(sid, index, part)
    with pytest.raises(NotFound):  # unfinished uploads are neither listed nor read
        await store.read(sid)
    assert await store.list() == []
    await store.complete(sid, {"session_id": sid, "user": "alice"})
    assert await store.read(sid) == b"".join(parts)
    assert await store.list() == [{"session_id": sid, "user": "alice"}]


@pytest.mark.parametrize("bad", ["../../etc/passwd", "", "abc", "..", "x" * 36,
                                 str(uuid.uuid4()).upper(), str(uuid.uuid4()) + "/meta"])
async def test_path_like_or_malformed_ids_are_refused(store: RecordingStore, bad: str) -> None:
    with pytest.raises(BadParameter, match="not a session id"):
        check_session_id(bad)
    with pytest.raises(BadParameter):
        await store.read(bad)


async def test_oversized_chunk_is_refused(store: RecordingStore) -> None:
    with pytest.raises(BadParameter):
        await store.put_chunk(str(uuid.uuid4()), 0, bytes(CHUNK + 1))
    with pytest.raises(BadParameter):
        await store.put_chunk(str(uuid.uuid4()), -1, b"x")
