"""write_all: every byte reaches a slow pipe reader, even when signals cut writes short;
write_uncached: exactly the data, with O_DIRECT or where the filesystem refuses it;
read_uncached: exactly the bytes asked for, at any offset, with O_DIRECT or without."""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path

import pytest

from gatehouse._sys.fdio import read_uncached, set_direct, write_all, write_uncached

SIZE = 8 << 20


def _slow_drain(fd: int, into: bytearray) -> None:
    while chunk := os.read(fd, 65536):
        into += chunk
        time.sleep(0.0005)


def test_write_all_survives_interrupted_writes() -> None:
    """A timer signal every millisecond makes write(2) on a full pipe return early."""
    import signal

    data = os.urandom(SIZE)
    r, w = os.pipe()
    got = bytearray()
    reader = threading.Thread(target=_slow_drain, args=(r, got))
    reader.start()
    old = signal.signal(signal.SIGALRM, lambda *_: None)
    signal.setitimer(signal.ITIMER_REAL, 0.001, 0.001)
    try:
        write_all(w, data)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0, 0)
        signal.signal(signal.SIGALRM, old)
        os.close(w)
        reader.join(timeout=30)
        os.close(r)
    assert bytes(got) == data


def test_ls_json_output_is_whole_when_python_is_unbuffered() -> None:
    """`gsh ls --format=json`'s printer under PYTHONUNBUFFERED (a stdout that does not
    retry a partial write) and a signal storm, read by a slow reader: the JSON parses
    and is all there (it used to be cut at a multiple of 64 KiB, exit status 0)."""
    script = textwrap.dedent("""
        import signal
        from gatehouse.cli.gsh import _print_nodes_json
        signal.signal(signal.SIGALRM, lambda *_: None)
        signal.setitimer(signal.ITIMER_REAL, 0.001, 0.001)
        _print_nodes_json([{"n": i, "pad": "x" * 200} for i in range(40000)])
        signal.setitimer(signal.ITIMER_REAL, 0, 0)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert proc.stdout is not None
    got = bytearray()
    _slow_drain(proc.stdout.fileno(), got)
    assert proc.wait(timeout=60) == 0
    import json

    listed = json.loads(got)
    assert len(listed) == 40000 and listed[-1]["n"] == 39999


@pytest.mark.parametrize("size", [0, 1, 4095, 4096, 4097, (4 << 20) + 123])
@pytest.mark.parametrize("where", ["disk", "tmpfs", "refused"])
def test_write_uncached_writes_exactly_the_data(tmp_path: Path, size: int, where: str,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """On the test's disk and on tmpfs (this kernel's takes O_DIRECT too), and where the
    filesystem refuses O_DIRECT (simulated: its open fails with EINVAL); O_DIRECT is
    asked for first every time."""
    directory = tmp_path if where != "tmpfs" else Path(tempfile.mkdtemp(dir="/dev/shm"))
    real_open = os.open
    direct: list[bool] = []

    def spy(path: Path, flags: int, mode: int = 0o777) -> int:
        direct.append(bool(flags & os.O_DIRECT))
        if where == "refused" and flags & os.O_DIRECT:
            raise OSError(errno.EINVAL, "Invalid argument")
        return real_open(path, flags, mode)

    monkeypatch.setattr(os, "open", spy)
    try:
        path = directory / "chunk"
        write_uncached(path, os.urandom(10_000))
        assert path.stat().st_mode & 0o777 == 0o600
        data = os.urandom(size)
        write_uncached(path, data)  # the older, longer file is replaced
        assert path.read_bytes() == data
        assert direct == ([True, False] * 2 if where == "refused" else [True, True])
    finally:
        monkeypatch.undo()
        if where == "tmpfs":
            shutil.rmtree(directory)


def test_write_uncached_refuses_a_symlink(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    target.write_bytes(b"kept")
    (tmp_path / "chunk").symlink_to(target)
    with pytest.raises(OSError):
        write_uncached(tmp_path / "chunk", b"data")
    assert target.read_bytes() == b"kept"


@pytest.mark.parametrize("direct", [True, False])
def test_read_uncached_reads_any_range(tmp_path: Path, direct: bool) -> None:
    data = os.urandom(3 * 4096 + 123)
    (tmp_path / "f").write_bytes(data)
    fd = os.open(tmp_path / "f", os.O_RDONLY)
    try:
        assert set_direct(fd, direct) == direct
        for offset in (0, 1, 4095, 4096, 5000, len(data) - 1, len(data)):
            for size in (0, 1, 100, 4096, 4097, 9000, 1 << 20):
                assert read_uncached(fd, offset, size) == data[offset:offset + size]
    finally:
        os.close(fd)
