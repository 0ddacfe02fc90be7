"""The auth's recording store: chunked uploads, listing finished ones, safe ids."""

from __future__ import annotations

import json
import uuid

import pytest

from gatehouse.backend import Item, open_backend
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


async def test_listing_reads_no_chunk(store: RecordingStore) -> None:
    """Listing reads the metadata items only: chunks of every recording ever made
    would otherwise all pass through memory for `gsh recordings ls`."""
    backend = store._backend
    read: list[bytes] = []
    real = backend.get_range

    async def counting(start: bytes, end: bytes, limit: int = 0) -> list[Item]:
        items = await real(start, end, limit)
        read.extend(i.key for i in items)
        return items

    backend.get_range = counting  # type: ignore[method-assign]
    sids = [str(uuid.uuid4()) for _ in range(3)]
    for sid in sids:
        for index in range(4):
            await store.put_chunk(sid, index, bytes(CHUNK))
        await store.complete(sid, {"session_id": sid})
    assert sorted(m["session_id"] for m in await store.list()) == sorted(sids)
    assert read and not [key for key in read if b"/chunk/" in key]


async def test_metadata_stored_beside_the_chunks_moves_once(store: RecordingStore) -> None:
    backend = store._backend
    old, new = str(uuid.uuid4()), str(uuid.uuid4())
    for sid in (old, new):
        await store.put_chunk(sid, 0, b"bytes of " + sid.encode())
    await backend.put(Item(f"/recordings/{old}/meta".encode(),
                           json.dumps({"session_id": old}).encode()))
    await store.complete(new, {"session_id": new})
    unfinished = str(uuid.uuid4())
    await store.put_chunk(unfinished, 0, b"still uploading")
    assert await store.move_old_metadata() == 1
    assert await store.move_old_metadata() == 0
    assert sorted(m["session_id"] for m in await store.list()) == sorted([old, new])
    assert await store.read(old) == b"bytes of " + old.encode()
    with pytest.raises(NotFound):
        await backend.get(f"/recordings/{old}/meta".encode())
    with pytest.raises(NotFound):
        await store.read(unfinished)
