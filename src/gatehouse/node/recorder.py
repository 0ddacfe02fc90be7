"""The node's session recorder: a SessionTap that appends frames to a file.

The hot path (``output()``/``resize()``, called from the session's reader
callbacks) appends to an in-memory buffer, except output chunks of
DIRECT_WRITE bytes or more (a busy stream), which it writes to the file at
once after the buffer, rather than copy them twice. The recorder's own task
writes the buffer out and fsyncs it every ``flush_interval`` seconds (the
fsync runs in a worker thread, so a slow disk does not stall the loop);
the buffer never holds more than ``max_buffer`` bytes: past that, the hot
path writes synchronously (page cache, no fsync). So a node killed at any
moment leaves ``<session_id>.part`` holding the session up to the last
flush, which ``recover()`` turns into a playable ``.rec`` at the next
start. ``close()`` flushes, fsyncs and renames ``.part`` to ``.rec``. A ``.rec`` stays
until the auth has it all: ``waiting()`` lists those a stop or a crash kept from their
upload, for the next start to send.

When the disk is full (or any write fails), the recording stops there: the file
is cut back to its last whole frame, so it plays back exactly the output it
holds, and ``on_failure`` is told (on the event loop) the error and how many
bytes of output the recording kept. The session goes on (docs/security.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path

from gatehouse._sys.fdio import fsync_directory, write_all
from gatehouse.clock import Clock, SystemClock
from gatehouse.errors import BadParameter
from gatehouse.wire.recording import (
    MAGIC,
    MAX_HEADER,
    RecordingMeta,
    RecordingWriter,
    decode_header,
    is_session_id,
)

__all__ = ["MAX_BUFFER", "OnFailure", "SessionRecorder", "read_meta", "recover", "waiting"]

log = logging.getLogger(__name__)

MAX_BUFFER = 1 << 20
DIRECT_WRITE = 64 << 10  # output chunks this large are written at once, not buffered
PART, FINAL, CORRUPT = ".part", ".rec", ".corrupt"
# Told once, on the event loop, when a recording stops early: the error, and the bytes
# of output the recording holds (all of them before the failure, none after).
OnFailure = Callable[[OSError, int], None]
_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_CLOEXEC | os.O_NOFOLLOW


class SessionRecorder:
    """Records one session into ``<directory>/<session_id>.part``; ``.rec`` once closed.

    ``start()`` creates the file and the flush task; ``end()`` (synchronous,
    for the session) or ``close()`` finishes it; ``wait_closed()`` waits for
    that, e.g. to upload the ``.rec``. Output after the end is ignored. I/O errors
    after ``start()`` never reach the session: they are logged, kept in ``error``,
    reported to ``on_failure``, and stop the recording, leaving what was written
    playable (``recorded`` counts its bytes of output).
    """

    def __init__(
        self,
        directory: Path,
        *,
        session_id: str,
        cluster: str,
        user: str,
        login: str,
        node: str,
        cols: int = 0,
        rows: int = 0,
        command: str = "",
        clock: Clock | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        flush_interval: float = 0.5,
        max_buffer: int = MAX_BUFFER,
        on_failure: OnFailure | None = None,
    ) -> None:
        if not flush_interval > 0 or max_buffer < 1:
            raise BadParameter(f"recorder flush_interval {flush_interval!r} and max_buffer "
                               f"{max_buffer!r}: expected positive values")
        self.meta = RecordingMeta(
            session_id=session_id, cluster=cluster, user=user, login=login, node=node,
            start=(clock or SystemClock()).now(), cols=cols, rows=rows, command=command,
        )
        self._header = RecordingWriter.header_bytes(self.meta)  # BadParameter now, not later
        self.directory = Path(directory)
        self.path = self.directory / f"{session_id}{PART}"
        self._monotonic = monotonic
        self._t0 = monotonic()
        self._interval = flush_interval
        self._max_buffer = max_buffer
        self._writer = RecordingWriter()
        self._buf = bytearray()
        self._buffered_output = 0  # bytes of output in the buffer's frames
        self._on_failure = on_failure
        self._loop: asyncio.AbstractEventLoop | None = None
        self._fd: int | None = None
        self._size = 0  # bytes in the file: always the end of a whole frame
        self._unsynced = False
        self._dir_synced = False
        self._stopped = False  # ended, or failed: the hot path records nothing more
        self._ending = asyncio.Event()
        self._task: asyncio.Task[Path] | None = None
        self.max_buffered = 0  # high-water mark of the buffer, in bytes
        self.recorded = 0  # bytes of output in the file
        self.error: OSError | None = None

    @property
    def buffered(self) -> int:
        return len(self._buf)

    def start(self) -> None:
        """Create the file (0600, directory 0700), write the header, start flushing.

        Call it before the session's first output: until then output is only buffered.
        OSError if the file cannot be made (a full disk leaves no empty file behind).
        """
        if self._task is not None:
            return
        _prepare_directory(self.directory)
        fd = os.open(self.path, _CREATE, 0o600)
        try:
            os.fchmod(fd, 0o600)  # whatever the umask
            write_all(fd, self._header)
        except OSError:
            os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(self.path)
            raise
        self._fd = fd
        self._size = len(self._header)
        self._unsynced = True
        self._loop = asyncio.get_running_loop()
        self._task = self._loop.create_task(
            self._run(), name=f"recorder {self.meta.session_id}")
        self.flush()  # anything recorded before start()

    # -- the hot path: SessionTap ---------------------------------------------

    def output(self, data: bytes) -> None:
        if self._stopped or not data:
            return
        header = self._writer.output_header(self._monotonic() - self._t0, len(data))
        if len(data) < DIRECT_WRITE or self._fd is None:
            self._append(header + data, len(data))
            return
        # A large chunk (a busy stream) goes to the file after what is buffered, without
        # being copied into the buffer first: recording a stream costs one copy, the
        # kernel's (bench: recording on vs off).
        self.flush()
        self._write((header, data), len(data))

    def resize(self, cols: int, rows: int) -> None:
        if self._stopped:
            return
        try:
            self._append(self._writer.frame_resize(self._monotonic() - self._t0, cols, rows), 0)
        except BadParameter as exc:
            log.warning("resize not recorded session_id=%s reason=%r", self.meta.session_id,
                        str(exc))

    def _append(self, frame: bytes, output: int) -> None:
        """Buffer a frame holding ``output`` bytes of output."""
        if self._fd is not None and len(self._buf) + len(frame) > self._max_buffer:
            self.flush()
            if len(frame) > self._max_buffer:
                self._write((frame,), output)
                return
        if self.error is not None:
            return
        self._buf += frame
        self._buffered_output += output
        self.max_buffered = max(self.max_buffered, len(self._buf))

    def flush(self) -> None:
        """Write the buffer to the file now (no fsync: the periodic flush does that)."""
        if self._buf and self._fd is not None:
            # A new buffer, not the old one cleared: a failed write's traceback (kept in
            # ``error``) still holds a view of the old one, which cannot be resized.
            buf, self._buf = self._buf, bytearray()
            output, self._buffered_output = self._buffered_output, 0
            self._write((buf,), output)

    def _write(self, parts: tuple[bytes | bytearray, ...], output: int) -> None:
        """Append whole frames (``parts``, holding ``output`` bytes of output), or fail."""
        fd = self._fd
        if fd is None or self.error is not None:
            return
        try:
            for part in parts:
                write_all(fd, part)
        except OSError as exc:
            self._fail(exc)
            return
        self._size += sum(len(part) for part in parts)
        self.recorded += output
        self._unsynced = True

    def _fail(self, exc: OSError) -> None:
        """Stop recording, keep the file's whole frames, tell ``on_failure`` (once)."""
        self._stopped = True
        self._buf = bytearray()  # dropped, not cleared: see flush()
        self._buffered_output = 0
        if self.error is not None:
            return
        self.error = exc
        log.error("recording stopped session_id=%s path=%s recorded_bytes=%d reason=%r",
                  self.meta.session_id, self.path, self.recorded, str(exc))
        if self._fd is not None:
            try:  # a write cut short leaves part of a frame: drop it
                os.ftruncate(self._fd, self._size)
            except OSError as cut:
                log.error("recording not cut back to its last frame session_id=%s reason=%r",
                          self.meta.session_id, str(cut))
        if self._on_failure is not None and self._loop is not None:
            # Maybe from the worker thread that finishes the file: the loop runs the hook.
            self._loop.call_soon_threadsafe(self._report, exc)

    def _report(self, exc: OSError) -> None:
        assert self._on_failure is not None
        try:
            self._on_failure(exc, self.recorded)
        except Exception:
            log.exception("recording failure hook failed session_id=%s", self.meta.session_id)

    # -- flushing and the end ----------------------------------------------------

    def end(self) -> None:
        """The session is over: record nothing more; the task finishes the file."""
        self._stopped = True
        self._ending.set()

    async def close(self) -> Path:
        """End, flush, fsync and rename to ``.rec``; the path of the file holding the recording.

        That is the ``.part`` file only if renaming failed (see ``error``).
        """
        self.end()
        return await self.wait_closed()

    async def wait_closed(self) -> Path:
        """Wait, without ending it, until the recording is finished (by ``end()``); as close()."""
        if self._task is None:
            raise RuntimeError(f"recorder {self.meta.session_id} was never started")
        # Shielded: a caller cancelled while waiting does not leave a half-finished file.
        return await asyncio.shield(self._task)

    async def _run(self) -> Path:
        while not self._ending.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._interval):
                    await self._ending.wait()
            self.flush()
            await self._sync()
        self.flush()
        return await asyncio.to_thread(self._finish)

    async def _sync(self) -> None:
        fd = self._fd
        if fd is None or not self._unsynced:
            return
        self._unsynced = False
        try:
            await asyncio.to_thread(os.fsync, fd)
            if not self._dir_synced:  # the new file's name, once
                await asyncio.to_thread(fsync_directory, self.directory)
                self._dir_synced = True
        except OSError as exc:
            self._fail(exc)

    def _finish(self) -> Path:
        """In a worker thread, after the last write: fsync, close, rename."""
        fd, self._fd = self._fd, None
        assert fd is not None
        try:
            os.fsync(fd)
        except OSError as exc:
            self._fail(exc)
        finally:
            os.close(fd)
        final = self.path.with_suffix(FINAL)
        try:
            os.replace(self.path, final)
            fsync_directory(self.directory)
        except OSError as exc:
            self._fail(exc)
            return self.path
        return final


def recover(directory: Path) -> list[Path]:
    """Turn the ``.part`` files a crashed node left into ``.rec`` files; the new paths.

    Run it at start-up, before sessions begin. Their frames decode up to the
    last flush (``truncated`` when the crash cut a frame). A file whose header
    is unreadable holds nothing playable: it is renamed ``.corrupt`` and logged.
    """
    directory = Path(directory)
    if not directory.is_dir():
        return []
    _prepare_directory(directory)
    recovered: list[Path] = []
    for part in sorted(directory.glob(f"*{PART}")):
        session_id = part.name[:-len(PART)]
        final = part.with_suffix(FINAL)
        if not is_session_id(session_id) or not part.is_file() or part.is_symlink():
            log.warning("recording recovery skipped path=%s reason=%r", part,
                        "not a session recording")
            continue
        if final.exists():
            log.warning("recording recovery skipped path=%s reason=%r", part,
                        f"{final.name} exists")
            continue
        try:
            # fsync: a crashed writer's last data, before the name says "complete".
            meta = read_meta(part, sync=True)
            if meta.session_id != session_id:
                raise BadParameter(f"header names session {meta.session_id}")
            os.replace(part, final)
        except BadParameter as exc:
            log.warning("recording unreadable path=%s reason=%r", part, str(exc))
            with contextlib.suppress(OSError):
                os.replace(part, part.with_suffix(CORRUPT))
            continue
        except OSError as exc:
            log.warning("recording recovery failed path=%s reason=%r", part, str(exc))
            continue
        log.info("recording recovered after a crash path=%s", final)
        recovered.append(final)
    fsync_directory(directory)
    return recovered


def waiting(directory: Path) -> list[Path]:
    """The finished recordings (``.rec``) not uploaded yet, oldest first: run it at
    start-up, after ``recover()``, before sessions begin."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    found = [p for p in directory.glob(f"*{FINAL}") if is_session_id(p.name[:-len(FINAL)])
             and p.is_file() and not p.is_symlink()]
    return sorted(found, key=lambda p: (p.stat().st_mtime, p.name))


def read_meta(path: Path, *, sync: bool = False) -> RecordingMeta:
    """A recording's header, read from the head of its file (``sync``: fsync it first);
    BadParameter if it is not one, OSError if it cannot be read."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    try:
        head = os.read(fd, len(MAGIC) + 4 + MAX_HEADER)
        if sync:
            os.fsync(fd)
    finally:
        os.close(fd)
    return decode_header(head)[0]


def _prepare_directory(directory: Path) -> None:
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(directory, 0o700)  # recordings hold whatever crossed users' terminals
