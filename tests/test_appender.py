"""The uncached appender: bytes land in order and whole, whoever writes them, with
O_DIRECT, and through the page cache where the filesystem refuses it (this kernel's
tmpfs takes O_DIRECT too: the refusal is simulated)."""

from __future__ import annotations

import concurrent.futures
import errno
import fcntl
import os
import random
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from gatehouse._sys.appender import Appender

SHM = Path("/dev/shm")
real_fcntl = fcntl.fcntl
Submit = Callable[[Callable[[], None]], object]


@pytest.fixture
def submit() -> Iterator[Submit]:
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        yield pool.submit


def refuse_direct(fd: int, cmd: int, arg: int = 0) -> int:
    """fcntl on a filesystem without O_DIRECT: setting it is EINVAL."""
    if cmd == fcntl.F_SETFL and arg & os.O_DIRECT:
        raise OSError(errno.EINVAL, "Invalid argument")
    return real_fcntl(fd, cmd, arg)


def where(kind: str, tmp_path: Path) -> Path:
    if kind != "tmpfs":
        return tmp_path
    directory = SHM / f"gatehouse-test-{os.getpid()}-{tmp_path.name}"
    directory.mkdir()
    return directory


def open_with(path: Path, head: bytes) -> int:
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    os.write(fd, head)
    return fd


@pytest.mark.parametrize("kind", ["disk", "tmpfs", "no O_DIRECT"])
@pytest.mark.parametrize("head_size", [0, 100, 4096, 5000])
def test_what_is_written_in_pieces_and_flushes_is_the_file(
        kind: str, head_size: int, tmp_path: Path, submit: Submit,
        monkeypatch: pytest.MonkeyPatch) -> None:
    if kind == "no O_DIRECT":
        monkeypatch.setattr(fcntl, "fcntl", refuse_direct)
    directory = where(kind, tmp_path)
    rng = random.Random(head_size)
    head = rng.randbytes(head_size)
    path = directory / "rec"
    fd = open_with(path, head)
    try:
        app = Appender(fd, len(head), submit, buffer_size=16 << 10, depth=2)
        assert app.direct == (kind != "no O_DIRECT")
        sent = bytearray(head)
        for i in range(400):
            piece = rng.randbytes(rng.choice([1, 13, 4095, 4096, 4097, 20_000, 70_000]))
            app.write(piece)
            sent += piece
            if i % 7 == 0:
                app.flush()
            if i % 31 == 0:  # what a periodic flush sees: the file so far, exactly
                app.flush()
                app.wait()
                assert app.pending == 0 and app.written == len(sent)
                assert path.read_bytes() == sent
        app.flush()
        app.wait()
        app.close()
        assert app.error is None and app.written == app.appended == len(sent)
        assert path.read_bytes() == sent
    finally:
        os.close(fd)
        if kind == "tmpfs":
            path.unlink()
            directory.rmdir()


def test_a_busy_writer_waits_for_the_disk_instead_of_holding_more(
        tmp_path: Path, submit: Submit) -> None:
    fd = open_with(tmp_path / "rec", b"")
    app = Appender(fd, 0, submit, buffer_size=8192, depth=2)
    data = os.urandom(1 << 20)
    for offset in range(0, len(data), 3000):
        app.write(data[offset:offset + 3000])
        assert app.pending <= (2 + 1) * 8192 + 3000  # the queue, the current buffer, one piece
    app.flush()
    app.wait()
    os.close(fd)
    assert (tmp_path / "rec").read_bytes() == data


def test_a_failed_write_stops_every_later_one_and_says_how_far_the_file_goes(
        tmp_path: Path, submit: Submit, monkeypatch: pytest.MonkeyPatch) -> None:
    fd = open_with(tmp_path / "rec", b"head")
    heard: list[OSError] = []
    app = Appender(fd, 4, submit, buffer_size=8192, on_error=heard.append)
    app.write(b"a" * 10_000)
    app.flush()
    app.wait()
    real = os.pwrite
    calls = 0

    def full(fd: int, data: memoryview, offset: int) -> int:
        nonlocal calls
        calls += 1
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "pwrite", full)
    app.write(b"b" * 30_000)
    app.flush()
    app.wait()
    assert isinstance(app.error, OSError) and app.error.errno == errno.ENOSPC
    assert heard == [app.error] and calls == 1 and app.written == 10_004
    monkeypatch.setattr(os, "pwrite", real)
    app.write(b"c" * 10)  # dropped: the file would have a hole
    app.flush()
    app.wait()
    os.close(fd)
    assert (tmp_path / "rec").read_bytes() == b"head" + b"a" * 10_000


def test_buffers_must_be_whole_blocks() -> None:
    with pytest.raises(ValueError, match="buffer_size 1000"):
        Appender(0, 0, lambda fn: None, buffer_size=1000)
