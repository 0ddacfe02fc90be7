"""The node's session recorder: files, flushing, crashes, recovery, bounded memory."""

from __future__ import annotations

import asyncio
import datetime as dt
import errno
import hashlib
import os
import stat
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import asyncssh
import pytest

from gatehouse.clock import FakeClock
from gatehouse.node import recorder as recorder_mod
from gatehouse.node.recorder import (
    MAX_PENDING,
    SessionRecorder,
    recover,
    waiting,
)
from gatehouse.node.session import SessionPolicy, make_session_factory
from gatehouse.wire.recording import Frame, decode, output_bytes

WAIT = 10.0
START = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)


class Mono:
    """A monotonic clock moved by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def make(tmp_path: Path) -> Callable[..., SessionRecorder]:
    def _make(**kwargs: Any) -> SessionRecorder:
        options: dict[str, Any] = {
            "session_id": str(uuid.uuid4()), "cluster": "us-east-1a", "user": "alice",
            "login": "deploy", "node": "node1", "cols": 80, "rows": 24,
            "clock": FakeClock(START), **kwargs,
        }
        return SessionRecorder(tmp_path / "recordings", **options)
    return _make


async def wait_for_file(path: Path, predicate: Callable[[bytes], bool]) -> bytes:
    async with asyncio.timeout(WAIT):
        while True:
            if path.exists() and predicate(data := path.read_bytes()):
                return data
            await asyncio.sleep(0.01)


async def test_records_output_and_resizes_in_order(make: Callable[..., SessionRecorder]) -> None:
    mono = Mono()
    rec = make(monotonic=mono, command="top")
    rec.start()
    rec.output(b"hello ")
    mono.now += 0.25
    rec.resize(120, 40)
    mono.now += 1.5
    rec.output(b"world\r\n")
    rec.output(b"")  # nothing to record
    path = await rec.close()
    assert path == rec.directory / f"{rec.meta.session_id}.rec"
    assert not rec.path.exists()
    recording = decode(path.read_bytes())
    assert recording.meta == rec.meta
    assert (recording.meta.start, recording.meta.command) == (START, "top")
    assert recording.frames == [Frame("o", 0.0, b"hello "), Frame("r", 0.25, cols=120, rows=40),
                                Frame("o", 1.75, b"world\r\n")]
    assert not recording.truncated
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(rec.directory.stat().st_mode) == 0o700
    assert rec.error is None


async def test_a_flush_puts_everything_recorded_in_the_file_in_order(
        make: Callable[..., SessionRecorder]) -> None:
    mono = Mono()
    rec = make(monotonic=mono, flush_interval=60)  # no periodic flush: only ours
    rec.start()
    rec.output(b"prompt$ ")
    mono.now += 1.0
    big = os.urandom(3 << 20)  # more than a staging buffer: the worker writes some already
    rec.output(big)
    rec.flush()
    await wait_until(lambda: rec.pending == 0)
    on_disk = rec.path.read_bytes()
    assert decode(on_disk).frames == [Frame("o", 0.0, b"prompt$ "), Frame("o", 1.0, big)]
    assert rec.recorded == len(b"prompt$ ") + len(big)
    rec.output(b"$ ")
    assert decode((await rec.close()).read_bytes()).frames[2:] == [Frame("o", 1.0, b"$ ")]


async def test_close_is_idempotent_and_later_output_is_ignored(
    make: Callable[..., SessionRecorder],
) -> None:
    rec = make()
    rec.start()
    rec.output(b"a")
    rec.end()
    rec.output(b"b")
    rec.resize(1, 1)
    path = await rec.close()
    assert await rec.close() == path
    assert output_bytes(decode(path.read_bytes())) == b"a"


async def test_end_lets_the_recorder_finish_on_its_own(
    make: Callable[..., SessionRecorder],
) -> None:
    rec = make()
    rec.start()
    waiter = asyncio.create_task(rec.wait_closed())
    await asyncio.sleep(0.01)
    rec.output(b"still recording")
    assert not waiter.done()
    rec.end()  # what the session calls, synchronously, when it is over
    path = await asyncio.wait_for(waiter, WAIT)
    assert path.suffix == ".rec" and not rec.path.exists()
    assert output_bytes(decode(path.read_bytes())) == b"still recording"


async def test_a_discarded_recording_leaves_no_file(make: Callable[..., SessionRecorder]) -> None:
    """A session whose child never started keeps no recording (nothing to upload)."""
    rec = make()
    rec.start()
    rec.discard()
    path = await asyncio.wait_for(rec.wait_closed(), WAIT)
    assert rec.discarded and not path.exists()
    assert list(rec.directory.iterdir()) == []


async def test_close_before_start_is_an_error(make: Callable[..., SessionRecorder]) -> None:
    with pytest.raises(RuntimeError):
        await make().close()


async def test_output_before_start_is_kept(make: Callable[..., SessionRecorder]) -> None:
    rec = make()
    rec.output(b"early ")
    rec.start()
    rec.output(b"late")
    assert output_bytes(decode((await rec.close()).read_bytes())) == b"early late"


async def test_an_existing_file_is_never_overwritten(make: Callable[..., SessionRecorder]) -> None:
    first = make()
    first.start()
    second = make(session_id=first.meta.session_id)
    with pytest.raises(FileExistsError):
        second.start()
    await first.close()


async def test_a_crash_leaves_the_flushed_prefix(
    make: Callable[..., SessionRecorder], tmp_path: Path,
) -> None:
    rec = make(flush_interval=0.01)
    rec.start()
    chunks = [f"line {i}\r\n".encode() for i in range(50)]
    for chunk in chunks:
        rec.output(chunk)
    # The node "dies" here: what a periodic flush put in the .part is all there is.
    data = await wait_for_file(rec.path, lambda d: output_bytes(decode(d)) == b"".join(chunks))
    rec.output(b"never flushed")
    crashed = tmp_path / "crashed"
    crashed.mkdir()
    sid = rec.meta.session_id
    for cut in range(len(data) - 40, len(data) + 1):
        (crashed / f"{sid}.part").write_bytes(data[:cut])
        (recovered,) = recover(crashed)
        assert recovered == crashed / f"{sid}.rec"
        got = decode(recovered.read_bytes())
        assert b"".join(chunks).startswith(output_bytes(got))
        assert got.truncated == ((len(data) - cut) % 22 != 0)  # each frame: 13 + 9 bytes
        recovered.unlink()
    await rec.close()


async def test_recover_renames_parts_and_sets_aside_the_unreadable(tmp_path: Path) -> None:
    assert recover(tmp_path / "missing") == []
    directory = tmp_path / "recordings"
    directory.mkdir(mode=0o755)
    good = SessionRecorder(directory, session_id=str(uuid.uuid4()), cluster="c", user="u",
                           login="l", node="n")
    good.start()
    good.output(b"kept")
    good.flush()  # what the periodic flush would have done before the crash
    await wait_until(lambda: good.pending == 0)
    part = good.path.read_bytes()
    await good.close()
    sid, other, done = (str(uuid.uuid4()) for _ in range(3))
    (directory / f"{sid}.part").write_bytes(part.replace(good.meta.session_id.encode(),
                                                         sid.encode()))
    (directory / f"{other}.part").write_bytes(b"")  # died before its header
    (directory / "not-a-session.part").write_bytes(part)
    (directory / f"{done}.part").write_bytes(part)
    (directory / f"{done}.rec").write_bytes(b"already there")
    assert recover(directory) == [directory / f"{sid}.rec"]
    assert output_bytes(decode((directory / f"{sid}.rec").read_bytes())) == b"kept"
    assert (directory / f"{other}.corrupt").exists()
    assert (directory / "not-a-session.part").exists()
    assert (directory / f"{done}.part").exists()
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    assert recover(directory) == []


def test_waiting_lists_the_finished_recordings_oldest_first(tmp_path: Path) -> None:
    """What the next start uploads: every .rec, the ones an upload cut short included,
    and nothing else (a .part is recover()'s, a .corrupt a person's)."""
    assert waiting(tmp_path / "missing") == []
    older, newer, part, corrupt = (str(uuid.uuid4()) for _ in range(4))
    for i, name in enumerate((f"{newer}.rec", f"{older}.rec", f"{part}.part",
                              f"{corrupt}.corrupt", "not-a-session.rec")):
        (tmp_path / name).write_bytes(b"x")
        os.utime(tmp_path / name, (1000 - i, 1000 - i))
    (tmp_path / f"{uuid.uuid4()}.rec").symlink_to(tmp_path / f"{older}.rec")
    assert waiting(tmp_path) == [tmp_path / f"{older}.rec", tmp_path / f"{newer}.rec"]


async def test_memory_stays_bounded_under_a_flood(make: Callable[..., SessionRecorder]) -> None:
    rec = make(flush_interval=60)  # only the cap flushes here
    rec.start()
    sent = hashlib.sha256()
    chunk = bytearray(os.urandom(65536))
    for i in range(800):  # 50 MiB
        chunk[:4] = i.to_bytes(4, "big")
        rec.output(bytes(chunk))
        sent.update(chunk)
        assert rec.pending <= MAX_PENDING
    big = os.urandom(3 * MAX_PENDING)  # one read larger than the cap: it waits for the disk
    rec.output(big)
    sent.update(big)
    assert 0 < rec.max_pending <= MAX_PENDING
    got = hashlib.sha256()
    for frame in decode((await rec.close()).read_bytes()).frames:
        assert frame.type == "o"
        got.update(frame.data)
    assert got.digest() == sent.digest()


async def wait_until(predicate: Callable[[], bool]) -> None:
    async with asyncio.timeout(WAIT):
        while not predicate():
            await asyncio.sleep(0.01)


async def test_a_write_error_stops_the_recording_not_the_session(
    make: Callable[..., SessionRecorder], monkeypatch: pytest.MonkeyPatch,
) -> None:
    reports: list[tuple[OSError, int]] = []
    rec = make(flush_interval=60, on_failure=lambda exc, kept: reports.append((exc, kept)))
    rec.start()
    rec.output(b"before")
    rec.flush()
    await wait_until(lambda: rec.pending == 0)
    real_pwrite = os.pwrite

    def full(fd: int, data: memoryview, offset: int) -> int:
        """A disk with room for all but the last 5 bytes: part of a frame, then ENOSPC."""
        real_pwrite(fd, data[:-5], offset)
        monkeypatch.setattr(os, "pwrite", refuse)
        raise OSError(errno.ENOSPC, "No space left on device")

    def refuse(fd: int, data: memoryview, offset: int) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "pwrite", full)
    rec.output(b"x" * 200)
    rec.flush()  # the worker's write fails: the session hears nothing of it
    await wait_until(lambda: bool(reports))
    assert isinstance(rec.error, OSError) and rec.recorded == len(b"before")
    monkeypatch.setattr(os, "pwrite", real_pwrite)  # room again, too late
    rec.output(b"after")
    rec.output(os.urandom(3 << 20))
    rec.resize(100, 30)
    path = await rec.close()
    got = decode(path.read_bytes())  # cut back to its last whole frame
    assert (output_bytes(got), got.truncated) == (b"before", False)
    assert [(exc.errno, kept) for exc, kept in reports] == [(errno.ENOSPC, 6)]  # once


async def _kept_then_full(rec: SessionRecorder, monkeypatch: pytest.MonkeyPatch) -> None:
    """Start ``rec``, get b"kept" into its file, then fill the disk: every write fails."""
    rec.start()
    rec.output(b"kept")
    rec.flush()
    await wait_until(lambda: rec.pending == 0)

    def full(fd: int, data: memoryview, offset: int) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "pwrite", full)


async def test_a_write_that_fails_at_the_end_is_reported_before_then(
    make: Callable[..., SessionRecorder], monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The session reports its exit when end()'s ``then`` is called: a failure of the
    last writes must be reported by then, for the user to be told while the channel is
    open; end() itself does not wait for the disk."""
    events: list[object] = []
    rec = make(flush_interval=60, on_failure=lambda exc, kept: events.append((exc.errno,
                                                                               kept)))
    await _kept_then_full(rec, monkeypatch)
    rec.output(b"lost" * 1000)  # only buffered: nothing has tried to write it yet
    written = asyncio.Event()

    def then() -> None:
        events.append("then")
        written.set()

    rec.end(then)
    assert events == []  # nothing waited for the disk in end()
    await asyncio.wait_for(written.wait(), WAIT)
    assert events == [(errno.ENOSPC, 4), "then"]
    monkeypatch.undo()
    assert output_bytes(decode((await rec.wait_closed()).read_bytes())) == b"kept"
    assert events == [(errno.ENOSPC, 4), "then"]


async def test_then_is_called_at_once_for_a_recorder_never_started(
        make: Callable[..., SessionRecorder]) -> None:
    called: list[bool] = []
    make().end(lambda: called.append(True))
    assert called == [True]


async def test_a_full_disk_under_a_busy_stream_never_reaches_the_session(
    make: Callable[..., SessionRecorder], monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A busy stream fills the queue, and the hot path then writes a buffer itself (the
    disk is the limit): a failure there stays in the recorder too."""
    rec = make(flush_interval=60)
    await _kept_then_full(rec, monkeypatch)
    for _ in range(40):
        rec.output(os.urandom(256 << 10))  # 10 MiB, over MAX_PENDING
    rec.flush()
    await wait_until(lambda: rec.error is not None)
    monkeypatch.undo()
    assert isinstance(rec.error, OSError) and rec.recorded == 4
    assert output_bytes(decode((await rec.close()).read_bytes())) == b"kept"


async def test_the_failure_is_reported_on_the_loop_even_from_the_last_fsync(
    make: Callable[..., SessionRecorder], monkeypatch: pytest.MonkeyPatch,
) -> None:
    loop = asyncio.get_running_loop()
    reported = asyncio.Event()
    where: list[bool] = []

    def on_failure(exc: OSError, kept: int) -> None:
        where.append(asyncio.get_running_loop() is loop)
        reported.set()

    rec = make(on_failure=on_failure)
    rec.start()
    rec.output(b"all of it")

    def fsync(fd: int) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "fsync", fsync)
    await rec.close()  # the fsync that fails runs in a worker thread
    await asyncio.wait_for(reported.wait(), WAIT)
    assert where == [True] and rec.recorded == len(b"all of it")


async def test_a_recording_that_cannot_start_leaves_no_file(
    make: Callable[..., SessionRecorder], monkeypatch: pytest.MonkeyPatch,
) -> None:
    rec = make()

    def refuse(fd: int, data: bytes | bytearray) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(recorder_mod, "write_all", refuse)
    with pytest.raises(OSError, match="No space left"):
        rec.start()
    assert list(rec.directory.iterdir()) == []


async def test_waiting_skips_what_is_not_a_finished_recording(tmp_path: Path) -> None:
    sid, other = sorted(str(uuid.uuid4()) for _ in range(2))
    for name in (f"{sid}.rec", f"{other}.rec", f"{sid}.part", "notes.rec", f"{other}.corrupt"):
        (tmp_path / name).write_bytes(b"")
    (tmp_path / f"{uuid.uuid4()}.rec").symlink_to(tmp_path / f"{sid}.rec")
    assert set(waiting(tmp_path)) == {tmp_path / f"{sid}.rec", tmp_path / f"{other}.rec"}


# -- a real session -----------------------------------------------------------------

ME = "root" if os.geteuid() == 0 else os.environ.get("USER", "")
HOST_KEY = asyncssh.generate_private_key("ssh-ed25519")
CLIENT_KEY = asyncssh.generate_private_key("ssh-ed25519")


@pytest.fixture
async def server_with(tmp_path: Path) -> AsyncIterator[tuple[int, SessionRecorder]]:
    rec = SessionRecorder(tmp_path / "rec", session_id=str(uuid.uuid4()), cluster="c",
                          user="alice", login=ME, node="n", cols=80, rows=24)
    rec.start()
    policy = SessionPolicy(login=ME, permit_pty=True, tap_factory=lambda info: rec)

    class Server(asyncssh.SSHServer):
        def begin_auth(self, username: str) -> bool:
            return True

        def session_requested(self) -> asyncssh.SSHServerSession[bytes]:
            return make_session_factory(policy)()

    server = await asyncssh.create_server(
        Server, "127.0.0.1", 0, server_host_keys=[HOST_KEY],
        authorized_client_keys=asyncssh.import_authorized_keys(
            CLIENT_KEY.export_public_key().decode()),
    )
    try:
        yield server.sockets[0].getsockname()[1], rec
    finally:
        server.close()
        await asyncio.wait_for(server.wait_closed(), WAIT)
        await rec.close()


async def test_a_pty_session_is_recorded_as_the_client_saw_it(
    server_with: tuple[int, SessionRecorder],
) -> None:
    port, rec = server_with
    async with asyncio.timeout(WAIT), asyncssh.connect(
        "127.0.0.1", port, username=ME, client_keys=[CLIENT_KEY], known_hosts=None,
        agent_path=None,
    ) as conn:
        proc = await conn.create_process(
            "printf 'caf\\303\\251 ready\\n'; read x; stty size",
            term_type="xterm", term_size=(80, 24), encoding=None)
        seen = await proc.stdout.readuntil(b"ready\r\n")
        proc.change_terminal_size(120, 40)
        proc.stdin.write(b"go\n")
        seen += await proc.stdout.read()
        await proc.wait()
    assert b"40 120" in seen
    recording = decode((await rec.close()).read_bytes())
    assert output_bytes(recording) == seen
    assert [(f.cols, f.rows) for f in recording.frames if f.type == "r"] == [
        (120, 40)]
