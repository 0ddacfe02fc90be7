"""Appending to a file past the page cache, the disk's wait kept off the caller's thread.

On these VMs a buffered write of a GiB into pages the guest has not touched costs
2.6 s of kernel CPU (see fdio.write_uncached), and a session recorder that writes a
busy stream that way took it from the session's own event loop. Here ``write`` copies
the bytes into page-aligned staging buffers (one memcpy, all the caller pays); a full
buffer goes to a worker thread, which writes it with O_DIRECT (~0.1 s a GiB, and the
disk's wait is the worker's). ``flush`` sends the partial buffer too: its last partial
block goes through the page cache (O_DIRECT writes whole blocks only), and the next
buffer starts with that block's bytes, so the next direct write covers it again, whole.
Where the filesystem refuses O_DIRECT (tmpfs), every write goes through the page cache.

Writes run in order, one at a time, in whichever thread holds the queue: a worker from
``submit`` or, when ``depth`` buffers already wait for the disk, the caller itself (the
disk is the limit then, as it was for a plain write). The first OSError stops all
writing: ``error`` keeps it, ``on_error`` hears of it from the thread that wrote, and
``written`` says how many bytes from the start of the file are known to be there.
"""

from __future__ import annotations

import collections
import mmap
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass

from gatehouse._sys.fdio import ALIGN, set_direct

__all__ = ["BUFFER", "DEPTH", "Appender"]

BUFFER = 1 << 20  # bytes a staging buffer holds (a whole number of blocks)
DEPTH = 2  # full buffers that may wait for the disk before ``write`` waits


@dataclass
class _Job:
    buffer: mmap.mmap
    offset: int  # where the buffer's first byte goes in the file (block-aligned)
    length: int  # bytes of the buffer to write


class Appender:
    """Appends to ``fd`` (open for reading and writing, ``size`` bytes long) from ``size`` on.

    ``submit(fn)`` runs ``fn`` on a worker thread (e.g. an executor's); it is called on
    the caller's thread, from ``write`` and ``flush`` only.
    """

    def __init__(self, fd: int, size: int, submit: Callable[[Callable[[], None]], object],
                 *, buffer_size: int = BUFFER, depth: int = DEPTH,
                 on_error: Callable[[OSError], None] | None = None) -> None:
        if buffer_size < ALIGN or buffer_size % ALIGN or depth < 1:
            raise ValueError(f"appender buffer_size {buffer_size} (a multiple of {ALIGN}) "
                             f"and depth {depth} (at least 1)")
        self._fd = fd
        self._submit = submit
        self._size = buffer_size
        self._depth = depth
        self._on_error = on_error
        self._spare: list[mmap.mmap] = []
        self._queue: collections.deque[_Job] = collections.deque()
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._owned = False  # a thread is writing the queue
        self.error: OSError | None = None
        self.written = size  # bytes from the file's start known to be in it
        self.appended = size  # bytes from the file's start, written or waiting
        # The current buffer starts at the block holding the file's end: that block's
        # bytes already in the file are read back into it, to be written again whole.
        self._offset = size - size % ALIGN
        head = os.pread(fd, size - self._offset, self._offset) if size > self._offset else b""
        self._buffer = self._take()
        self._buffer[:len(head)] = head
        self._used = len(head)  # bytes in the current buffer
        self._fresh = 0  # of which not sent yet
        self._direct = set_direct(fd, True)

    @property
    def direct(self) -> bool:
        """Whether whole blocks are written with O_DIRECT (else through the page cache)."""
        return self._direct

    @property
    def pending(self) -> int:
        """Bytes appended and not yet known to be written."""
        return self.appended - self.written

    def write(self, data: bytes | bytearray) -> None:
        """Append ``data`` (copied; the caller may reuse it at once). Dropped after an error."""
        if self.error is not None:
            return
        size, used = len(data), self._used
        if used + size < self._size:  # the common case: it fits, one copy
            self._buffer[used:used + size] = data
            self._used, self._fresh, self.appended = (
                used + size, self._fresh + size, self.appended + size)
            return
        view = memoryview(data).cast("B")
        while view:
            step = min(self._size - self._used, len(view))
            self._buffer[self._used:self._used + step] = view[:step]
            self._used += step
            self._fresh += step
            self.appended += step
            view = view[step:]
            if self._used == self._size:
                self._send(tail=b"")

    def flush(self) -> None:
        """Send what is buffered to be written (``wait`` waits for it)."""
        if self.error is None and self._fresh:
            whole = self._used - self._used % ALIGN
            self._send(tail=bytes(self._buffer[whole:self._used]))

    def wait(self) -> None:
        """Write, or wait for the writing of, everything sent so far (blocking: a thread's
        call, or the caller's when it must)."""
        self._run(until_empty=True)

    def stop(self, exc: OSError) -> None:
        """Write nothing more (as after a failed write): the caller saw ``exc`` elsewhere
        (an fsync). A write already under way still finishes."""
        with self._lock:
            if self.error is None:
                self.error = exc.with_traceback(None)

    def close(self) -> None:
        """Release the staging buffers (after ``wait``; the caller closes the fd)."""
        with self._lock:
            buffers, self._spare = [*self._spare, self._buffer], []
        for buffer in buffers:
            buffer.close()

    # -- internals ---------------------------------------------------------------

    def _take(self) -> mmap.mmap:
        with self._lock:
            if self._spare:
                return self._spare.pop()
        return mmap.mmap(-1, self._size)  # anonymous maps are page-aligned

    def _send(self, tail: bytes) -> None:
        """Queue the current buffer; continue in a fresh one holding ``tail`` (the partial
        block at the end, written now through the page cache and again later whole)."""
        job = _Job(self._buffer, self._offset, self._used)
        self._offset += self._used - len(tail)
        self._buffer = self._take()
        self._buffer[:len(tail)] = tail
        self._used, self._fresh = len(tail), 0
        with self._lock:
            self._queue.append(job)
            full = len(self._queue) > self._depth
        if full:
            self._run(until_empty=False)  # the disk is the limit: wait for a slot
        with self._lock:
            idle = bool(self._queue) and not self._owned
        if idle:
            self._submit(self._drain)

    def _drain(self) -> None:
        self._run(until_empty=True)

    def _done(self, until_empty: bool) -> bool:
        return not self._queue or (not until_empty and len(self._queue) <= self._depth)

    def _run(self, *, until_empty: bool) -> None:
        """Write queued jobs in this thread if no other does, else wait for that one: until
        the queue is empty, or (``until_empty`` false) until it has room. Ownership ends in
        the same locked step that finds the work done, so that a job queued just after
        it sees no owner and is submitted."""
        with self._lock:
            while self._owned and not self._done(until_empty):
                self._changed.wait()
            if self._done(until_empty):
                return
            self._owned = True
        try:
            while True:
                with self._lock:
                    job = self._queue[0]
                self._write(job)
                with self._lock:
                    self._spare.append(self._queue.popleft().buffer)
                    if self.error is not None:  # nothing after a failed write
                        self._spare.extend(j.buffer for j in self._queue)
                        self._queue.clear()
                    self._changed.notify_all()
                    if self._done(until_empty):
                        self._owned = False
                        return
        except BaseException:
            with self._lock:
                self._owned = False
                self._changed.notify_all()
            raise

    def _write(self, job: _Job) -> None:
        if self.error is not None:
            return
        whole = job.length - job.length % ALIGN if self._direct else 0
        try:
            with memoryview(job.buffer) as view:
                _pwrite_all(self._fd, view[:whole], job.offset)
                if whole < job.length:
                    self._write_cached(view[whole:job.length], job.offset + whole)
        except OSError as exc:
            # Without its traceback, whose frames hold views of the buffer: close() must
            # be able to unmap it.
            self.error = exc.with_traceback(None)
            if self._on_error is not None:
                self._on_error(exc)
            return
        self.written = max(self.written, job.offset + job.length)

    def _write_cached(self, data: memoryview, offset: int) -> None:
        if not self._direct:
            _pwrite_all(self._fd, data, offset)
            return
        set_direct(self._fd, False)
        try:
            _pwrite_all(self._fd, data, offset)
        finally:
            set_direct(self._fd, True)


def _pwrite_all(fd: int, data: memoryview, offset: int) -> None:
    while data:
        done = os.pwrite(fd, data, offset)
        data, offset = data[done:], offset + done

