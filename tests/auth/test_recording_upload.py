"""A node's recording upload (node/uploader.py) against the real auth API: chunk by
chunk from a map of the file, whole on the auth, the local file gone after."""

from __future__ import annotations

import datetime as dt
import uuid
from pathlib import Path

from gatehouse.auth.server import AuthServer
from gatehouse.node.uploader import upload_with_retries
from gatehouse.recording import RecordingMeta, RecordingWriter, decode
from gatehouse.services.recordings import CHUNK
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
    await upload_with_retries(node, path)
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
        await upload_with_retries(node, path)
        assert not path.exists() and path.with_suffix(".corrupt").read_bytes() == content
    assert await server.recordings.list() == []
