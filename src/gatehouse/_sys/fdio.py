"""File-descriptor chores done the same way everywhere: write every byte, however many
calls the kernel takes; write a file past the page cache; make a directory's entries
durable."""

from __future__ import annotations

import errno
import fcntl
import mmap
import os
import threading
from pathlib import Path

__all__ = ["fsync_directory", "read_uncached", "set_direct", "write_all", "write_uncached"]

ALIGN = 4096  # O_DIRECT's alignment of buffers, sizes and offsets (a page; ext4's block)
_buffers = threading.local()  # each writing thread's aligned buffer, kept for its next file


def write_all(fd: int, data: bytes | bytearray | memoryview) -> None:
    """Loop until ``data`` is written: a write(2) to a pipe or terminal may take part of it.

    Python's own stdout does not loop when it is unbuffered (``python -u`` or
    PYTHONUNBUFFERED): a partial write, e.g. one interrupted while a slow reader
    drains the pipe, would silently cut the output short.
    """
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def write_uncached(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Create ``path`` (truncated if there; a symlink is refused) holding ``data``, written
    with O_DIRECT where the filesystem takes it (as usual where it refuses it: tmpfs
    before Linux 6.6, some network filesystems).

    On these VMs a buffered write of a GiB into pages the guest has not touched since
    boot costs 2.6 s of kernel CPU, and reused pages ~0.3 s; with O_DIRECT, 0.1 s (and
    a copy into an aligned buffer, ~0.1 s). Files written once and read rarely (a
    recording's chunks) need no cached copy. The last ``len(data) % ALIGN`` bytes go
    through the page cache: O_DIRECT writes whole blocks only.
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC | os.O_NOFOLLOW
    try:
        fd, direct = os.open(path, flags | os.O_DIRECT, mode), True
    except OSError as exc:
        if exc.errno != errno.EINVAL:
            raise
        fd, direct = os.open(path, flags, mode), False  # no O_DIRECT here (tmpfs)
    try:
        whole = len(data) - len(data) % ALIGN if direct else 0
        if whole:
            buffer = _aligned(whole)
            with memoryview(buffer) as view:
                view[:whole] = memoryview(data)[:whole]
                write_all(fd, view[:whole])
        if direct and whole < len(data):
            fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_DIRECT)
        write_all(fd, memoryview(data)[whole:])
    finally:
        os.close(fd)


def set_direct(fd: int, on: bool) -> bool:
    """Turn O_DIRECT on or off for ``fd``; False where the filesystem refuses it."""
    flags = fcntl.fcntl(fd, fcntl.F_GETFL)
    try:
        fcntl.fcntl(fd, fcntl.F_SETFL, flags | os.O_DIRECT if on else flags & ~os.O_DIRECT)
    except OSError as exc:
        if exc.errno != errno.EINVAL:
            raise
        return False
    return on


def read_uncached(fd: int, offset: int, size: int) -> bytes:
    """``size`` bytes of ``fd`` from ``offset`` (fewer at the file's end), read in whole
    aligned blocks through this thread's aligned buffer: past the page cache when ``fd``
    has O_DIRECT (set_direct), as a read into fresh cache pages costs what a write does."""
    start = offset - offset % ALIGN
    length = -(-(offset + size - start) // ALIGN) * ALIGN
    buffer = _aligned(length)
    got = 0
    with memoryview(buffer) as view:
        while got < length:
            done = os.preadv(fd, [view[got:length]], start + got)
            if not done:
                break
            got += done
        return bytes(view[offset - start:min(got, offset + size - start)])


def _aligned(size: int) -> mmap.mmap:
    """This thread's page-aligned buffer of at least ``size`` bytes (an anonymous map:
    pages are aligned), grown as needed and kept: fresh pages cost what the page cache's
    would."""
    buffer: mmap.mmap | None = getattr(_buffers, "buffer", None)
    if buffer is None or len(buffer) < size:
        if buffer is not None:
            buffer.close()
        buffer = _buffers.buffer = mmap.mmap(-1, size)
    return buffer


def fsync_directory(directory: Path) -> None:
    """fsync a directory, so that the names created or renamed in it survive a crash."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
