"""Write every byte to a file descriptor, however many calls the kernel takes."""

from __future__ import annotations

import os

__all__ = ["write_all"]


def write_all(fd: int, data: bytes | memoryview) -> None:
    """Loop until ``data`` is written: a write(2) to a pipe or terminal may take part of it.

    Python's own stdout does not loop when it is unbuffered (``python -u`` or
    PYTHONUNBUFFERED): a partial write, e.g. one interrupted while a slow reader
    drains the pipe, would silently cut the output short.
    """
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]
