"""A node's recording upload (node/uploader.py) against the real auth API: chunk by
chunk from a map of the file, whole on the auth, the local file gone after."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import errno
import uuid
from pathlib import Path
from typing import Any, cast

import pytest

from gatehouse._sys import fdio
from gatehouse.auth.server import AuthServer
from gatehouse.client.authclient import AuthClient
from gatehouse.errors import AlreadyExists, BadParameter
from gatehouse.node.uploader import upload_with_retries
from gatehouse.services import recordings as recordings_mod
from gatehouse.wire.authapi import AuthAPI, RecordingDone
from gatehouse.wire.names import RECORDING_CHUNK as CHUNK
from gatehouse.wire.names import RECORDING_TAIL
from gatehouse.wire.recording import RecordingMeta, RecordingWriter, decode
from tests.auth.conftest import API
from tests.auth.samples import NODE_ADDR


def write_recording(path: Path, outputs: list[bytes]) -> RecordingMeta:
    meta = RecordingMeta(session_id=str(uuid.uuid4()), cluster="c", user="alice",
                         login="root", node="node1", start=dt.datetime.now(dt.UTC))
    writer = RecordingWriter()
    data = writer.header_bytes(meta)
    for i, out in enumerate(outputs):
        data += writer.frame_output(i * 0.5, out)
    path.write_bytes(data)
    return meta


async def test_a_recording_of_several_chunks_arrives_whole(api: API, server: AuthServer,
                                                           tmp_path: Path) -> None:
    node = await api.host("node", "hid-1", "node1", [NODE_ADDR])
    path = tmp_path / "s.rec"
    outputs = [bytes([i]) * (CHUNK // 2 + 7) for i in range(5)]  # ~2.5 chunks
    meta = write_recording(path, outputs)
    sent = path.read_bytes()
    await upload_with_retries(AuthClient(node), path)
    assert not path.exists()
    stored = await server.recordings.read(meta.session_id)
    assert stored == sent and len(stored) > 2 * CHUNK
    assert b"".join(f.data for f in decode(stored).frames) == b"".join(outputs)
    listed = await server.recordings.meta(meta.session_id)
    assert (listed["user"], listed["truncated"]) == ("alice", False)
    assert dt.datetime.fromisoformat(listed["end"]) == meta.start + dt.timedelta(seconds=2)


async def test_an_empty_or_unreadable_file_is_kept_as_corrupt(api: API, server: AuthServer,
                                                              tmp_path: Path) -> None:
    node = await api.host("node", "hid-1", "node1", [NODE_ADDR])
    for name, content in (("empty.rec", b""), ("junk.rec", b"not a recording")):
        path = tmp_path / name
        path.write_bytes(content)
        await upload_with_retries(AuthClient(node), path)
        assert not path.exists() and path.with_suffix(".corrupt").read_bytes() == content
    assert await server.recordings.list() == []


async def test_a_complete_recording_cannot_change(api: API, server: AuthServer,
                                                  tmp_path: Path) -> None:
    """Not by a second upload of the same session (a node that crashed before it
    removed its copy sends it again: that counts as done), nor by a chunk sent later."""
    node = await api.host("node", "hid-1", "node1", [NODE_ADDR])
    path = tmp_path / "s.rec"
    meta = write_recording(path, [b"what the user saw"])
    kept = path.read_bytes()
    await upload_with_retries(AuthClient(node), path)
    path.write_bytes(kept)  # as if the node crashed before it removed the file
    await upload_with_retries(AuthClient(node), path)
    assert not path.exists()
    with pytest.raises(AlreadyExists, match="is complete"):
        await node.put_bytes(f"/v1/recordings/{meta.session_id}/chunks/0", b"rewritten")
    with pytest.raises(AlreadyExists, match="is complete"):
        await node.post(f"/v1/recordings/{meta.session_id}/complete", {"user": "mallory"})
    assert await server.recordings.read(meta.session_id) == kept
    assert (await server.recordings.meta(meta.session_id))["user"] == "alice"
    with pytest.raises(AlreadyExists, match="is complete"):  # nor by a tail sent later
        await node.post(f"/v1/recordings/{meta.session_id}/complete",
                        {"user": "mallory", "tail": base64.b64encode(b"x").decode()})
    assert await server.recordings.read(meta.session_id) == kept


class CountingAPI:
    """The node's client of the auth, counting the recording calls it makes."""

    def __init__(self, api: AuthClient) -> None:
        self._api = api
        self.calls: list[str] = []

    async def put_recording_chunk(self, session_id: str, index: int, data: bytes) -> None:
        self.calls.append(f"chunk {index} {len(data)}")
        await self._api.put_recording_chunk(session_id, index, data)

    async def complete_recording(self, session_id: str, done: RecordingDone) -> dict[str, Any]:
        self.calls.append(f"complete {done.tail_index} {len(base64.b64decode(done.tail))}")
        return await self._api.complete_recording(session_id, done)


@pytest.mark.parametrize("size", [100, RECORDING_TAIL - 200, RECORDING_TAIL + 5000,
                                  CHUNK + RECORDING_TAIL + 1])
async def test_the_last_bytes_go_with_the_completion(api: API, server: AuthServer,
                                                     tmp_path: Path, size: int) -> None:
    node = await api.host("node", "hid-1", "node1", [NODE_ADDR])
    path = tmp_path / "s.rec"
    meta = write_recording(path, [b"o" * size])
    sent = path.read_bytes()
    counting = CountingAPI(AuthClient(node))
    await upload_with_retries(cast(AuthAPI, counting), path)
    assert await server.recordings.read(meta.session_id) == sent
    assert counting.calls[-1] == f"complete {len(counting.calls) - 1} {RECORDING_TAIL}" \
        if len(sent) > RECORDING_TAIL else counting.calls == [f"complete 0 {len(sent)}"]
    assert all(int(c.split()[2]) <= CHUNK for c in counting.calls)


async def test_a_tail_that_is_too_long_or_not_base64_is_refused(api: API, server: AuthServer
                                                               ) -> None:
    node = await api.host("node", "hid-1", "node1", [NODE_ADDR])
    session = str(uuid.uuid4())
    for tail, why in ((base64.b64encode(b"x" * (RECORDING_TAIL + 1)).decode(), "at most"),
                      ("not base64!", "must be base64")):
        with pytest.raises(BadParameter, match=why):
            await node.post(f"/v1/recordings/{session}/complete",
                            {"user": "mallory", "tail": tail})
    with pytest.raises(BadParameter, match="out of bounds"):
        await node.post(f"/v1/recordings/{session}/complete",
                        {"tail": "eA==", "tail_index": -1})
    assert await server.recordings.list() == []


async def test_a_full_auth_disk_holds_the_upload_until_there_is_room(
        api: API, server: AuthServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The auth answers LimitExceeded (not an internal error) and keeps no partial chunk;
    the node keeps its file, says so once, and retries until the auth has room."""
    node = await api.host("node", "hid-1", "node1", [NODE_ADDR])
    path = tmp_path / "s.rec"
    meta = write_recording(path, [b"o" * (CHUNK + 7)])
    sent = path.read_bytes()
    real_write = fdio.write_uncached
    refusals = 2

    def full_disk(path: Path, data: bytes, mode: int = 0o600) -> None:
        nonlocal refusals
        if refusals:
            refusals -= 1
            real_write(path, data[:100], mode)  # part of the chunk reached the disk
            raise OSError(errno.ENOSPC, "No space left on device")
        real_write(path, data, mode)

    monkeypatch.setattr(recordings_mod, "write_uncached", full_disk)
    held: list[str] = []
    await asyncio.wait_for(upload_with_retries(AuthClient(node), path, on_held=held.append),
                           30)
    assert held == [f"the auth cannot store recording {meta.session_id} now: its recordings "
                    "directory is full (No space left on device)"]
    assert (refusals, path.exists()) == (0, False)
    assert await server.recordings.read(meta.session_id) == sent
    assert not list(server.recordings.directory.rglob("*.part"))
