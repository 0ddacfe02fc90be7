"""A node's recording upload (node/uploader.py) against the real auth API: chunk by
chunk from a map of the file, whole on the auth, the local file gone after."""

from __future__ import annotations

import datetime as dt
import uuid
from pathlib import Path

import pytest

from gatehouse.auth.server import AuthServer
from gatehouse.client.authclient import AuthClient
from gatehouse.errors import AlreadyExists
from gatehouse.node.uploader import upload_with_retries
from gatehouse.wire.names import RECORDING_CHUNK as CHUNK
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
