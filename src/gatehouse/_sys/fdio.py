"""File-descriptor chores done the same way everywhere: write every byte, however many
calls the kernel takes; make a directory's entries durable."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["fsync_directory", "write_all"]


def write_all(fd: int, data: bytes | bytearray | memoryview) -> None:
    """Loop until ``data`` is written: a write(2) to a pipe or terminal may take part of it.

    Python's own stdout does not loop when it is unbuffered (``python -u`` or
    PYTHONUNBUFFERED): a partial write, e.g. one interrupted while a slow reader
    drains the pipe, would silently cut the output short.
    """
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def fsync_directory(directory: Path) -> None:
    """fsync a directory, so that the names created or renamed in it survive a crash."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
