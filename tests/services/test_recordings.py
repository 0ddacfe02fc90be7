"""The auth's recording store: chunked uploads into files, listing finished ones, safe ids,
and recordings an earlier version kept in the backend."""

from __future__ import annotations

import json
import stat
import uuid
from pathlib import Path

import pytest

from gatehouse.backend import Item, open_backend
from gatehouse.clock import FakeClock
from gatehouse.errors import AlreadyExists, BadParameter, NotFound
from gatehouse.services.recordings import RecordingStore
from gatehouse.wire.names import RECORDING_CHUNK as CHUNK
from gatehouse.wire.recording import check_session_id


@pytest.fixture
async def store(tmp_path: Path) -> RecordingStore:
    return RecordingStore(await open_backend("memory", path=None, clock=FakeClock()),
                          tmp_path / "recordings")


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


# A fixed session id in parameters: their ids must be the same in every xdist worker.
A_UUID = "6f1c2a3e-8b4d-4e5f-9a0b-1c2d3e4f5a6b"


@pytest.mark.parametrize("bad", ["../../etc/passwd", "", "abc", "..", "x" * 36,
                                 A_UUID.upper(), A_UUID + "/meta"])
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


async def test_chunks_are_private_files_and_the_backend_holds_metadata_only(
        store: RecordingStore) -> None:
    """A recording's bytes stay out of the backend, which every request reads: only its
    metadata is an item there. Recordings hold whatever crossed users' terminals."""
    sid = str(uuid.uuid4())
    await store.put_chunk(sid, 1, b"second")
    await store.put_chunk(sid, 0, b"first, sent twice")
    await store.put_chunk(sid, 0, b"first ")  # a retried chunk replaces the first try
    await store.complete(sid, {"session_id": sid})
    assert await store.read(sid) == b"first second"
    items = await store._backend.get_range(b"/", b"0")
    assert [i.key for i in items] == [f"/recording_meta/{sid}".encode()]
    directory = store.directory / sid
    assert sorted(p.name for p in directory.iterdir()) == ["000000", "000001"]
    for path in (store.directory, directory):
        assert stat.S_IMODE(path.stat().st_mode) == 0o700
    assert stat.S_IMODE((directory / "000000").stat().st_mode) == 0o600


async def test_a_recording_without_chunks_cannot_complete(store: RecordingStore) -> None:
    with pytest.raises(BadParameter, match="no chunks"):
        await store.complete(str(uuid.uuid4()), {})
    assert await store.list() == []


async def test_recordings_kept_in_the_backend_move_to_files(store: RecordingStore) -> None:
    """An earlier version stored chunks and metadata as items under /recordings/."""
    backend = store._backend
    done, unfinished = str(uuid.uuid4()), str(uuid.uuid4())
    parts = [bytes([7]) * CHUNK, b"tail"]
    for index, part in enumerate(parts):
        await backend.put(Item(f"/recordings/{done}/chunk/{index:06d}".encode(), part))
    await backend.put(Item(f"/recordings/{done}/meta".encode(),
                           json.dumps({"session_id": done}).encode()))
    await backend.put(Item(f"/recordings/{unfinished}/chunk/000000".encode(), b"partial"))
    assert await store.move_from_backend() == 1
    assert await store.list() == [{"session_id": done}]
    assert await store.read(done) == b"".join(parts)
    assert await backend.get_range(b"/recordings/", b"/recordings0") == []
    await store.put_chunk(unfinished, 1, b" and the rest")  # its upload goes on
    await store.complete(unfinished, {"session_id": unfinished})
    assert await store.read(unfinished) == b"partial and the rest"
    assert await store.move_from_backend() == 0
    # A start that moved a recording and stopped before removing the items:
    await backend.put(Item(f"/recordings/{done}/chunk/000000".encode(), b"stale"))
    await backend.put(Item(f"/recordings/{done}/meta".encode(), b"{}"))
    assert await store.move_from_backend() == 0
    assert await store.read(done) == b"".join(parts)
    assert await backend.get_range(b"/recordings/", b"/recordings0") == []


async def test_without_a_directory_chunks_are_backend_items_any_store_serves() -> None:
    """Auths sharing a backend (PostgreSQL) keep the chunks there: a recording uploaded
    to one auth's store is read back from another's."""
    backend = await open_backend("memory", path=None, clock=FakeClock())
    first, second = RecordingStore(backend, None), RecordingStore(backend, None)
    sid = str(uuid.uuid4())
    parts = [bytes([i]) * CHUNK for i in range(2)] + [b"tail"]
    await first.put_chunk(sid, 1, b"sent twice")
    for index, part in reversed(list(enumerate(parts[:2]))):
        await first.put_chunk(sid, index, part)  # a chunk sent again replaces the first
    with pytest.raises(NotFound):
        await second.read(sid)
    await first.complete(sid, {"session_id": sid}, tail=(2, parts[2]))
    assert await second.read(sid) == b"".join(parts)
    assert await second.list() == [{"session_id": sid}]
    with pytest.raises(AlreadyExists):  # complete: it cannot change
        await second.put_chunk(sid, 0, b"x")
    assert [i.key for i in await backend.get_range(b"/recording_chunks/", b"/recording_chunks0")
            ] == [f"/recording_chunks/{sid}/{n:06d}".encode() for n in range(3)]
    empty = str(uuid.uuid4())
    with pytest.raises(BadParameter, match="no chunks"):
        await first.complete(empty, {"session_id": empty})
    with pytest.raises(BadParameter):
        await first.put_chunk("../x", 0, b"")
    await backend.close()
