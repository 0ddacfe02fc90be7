"""The node's session recorder: a SessionTap that appends frames to a file.

The hot path (``output()``/``resize()``, called from the session's reader callbacks)
copies each frame into the staging buffers of an uncached appender (_sys.appender),
whose worker thread writes them past the page cache: recording a busy stream costs the
session's event loop one memcpy, and neither the kernel's page-cache work nor the
disk's wait. The recorder's own task flushes and fsyncs every ``flush_interval``
seconds (in a worker thread); memory stays bounded (MAX_PENDING: past it, the hot path
waits for the disk). So a node killed at any moment leaves ``<session_id>.part``
holding the session up to the last flush, which ``recover()`` turns into a playable
``.rec`` at the next start. ``close()`` flushes, fsyncs and renames ``.part`` to
``.rec``. A ``.rec`` stays until the auth has it all: ``waiting()`` lists those a stop
or a crash kept from their upload, for the next start to send.

When the disk is full (or any write fails), the recording stops there: the file
is cut back to its last whole frame, so it plays back exactly the output it
holds, and ``on_failure`` is told (on the event loop) the error and how many
bytes of output the recording kept. The session goes on (docs/security.md).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

from gatehouse._sys.appender import BUFFER, DEPTH, Appender
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

__all__ = ["MAX_PENDING", "OnFailure", "SessionRecorder", "read_meta", "recover", "waiting"]

log = logging.getLogger(__name__)

# Bytes of a started recording held in memory at most, besides the frame being copied:
# the buffers waiting for the disk and the one being filled.
MAX_PENDING = (DEPTH + 1) * BUFFER
PART, FINAL, CORRUPT = ".part", ".rec", ".corrupt"
# Told once, on the event loop, when a recording stops early: the error, and the bytes
# of output the recording holds (all of them before the failure, none after).
OnFailure = Callable[[OSError, int], None]
# Read too: the appender reads back the partial block at the end. No O_APPEND: the
# appender writes at offsets (pwrite), which O_APPEND would ignore.
_CREATE = os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW


class SessionRecorder:
    """Records one session into ``<directory>/<session_id>.part``; ``.rec`` once closed.

    ``start()`` creates the file and the flush task; ``end()`` (synchronous,
    for the session) or ``close()`` finishes it; ``wait_closed()`` waits for
    that, e.g. to upload the ``.rec``. Output after the end is ignored. I/O errors
    after ``start()`` never reach the session: they are logged, kept in ``error``,
    reported to ``on_failure``, and stop the recording, leaving what was written
    playable (``recorded`` counts its bytes of output known to be in the file).
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
        on_failure: OnFailure | None = None,
    ) -> None:
        if not flush_interval > 0:
            raise BadParameter(f"recorder flush_interval {flush_interval!r}: expected a "
                               "positive number of seconds")
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
        self._writer = RecordingWriter()
        self._early = bytearray()  # frames recorded before start()
        self._on_failure = on_failure
        self._loop: asyncio.AbstractEventLoop | None = None
        self._fd: int | None = None
        self._appender: Appender | None = None
        self._end = len(self._header)  # where the last frame ends in the file
        self._output = 0  # bytes of output in all frames so far
        # (end, output) of the frames not known to be written, after the last one that
        # is: its end is where a failed recording is cut back to.
        self._frames = collections.deque([(self._end, 0)])
        self._unsynced = False
        self._dir_synced = False
        self._stopped = False  # ended, or failed: the hot path records nothing more
        self._ending = asyncio.Event()
        self._then: Callable[[], None] | None = None  # end()'s, called once written out
        self._task: asyncio.Task[Path] | None = None
        self.discarded = False  # discard(): the session never ran, no recording is kept
        self.max_pending = 0  # high-water mark of the bytes waiting to be written
        self._failing = threading.Lock()
        self.error: OSError | None = None

    @property
    def pending(self) -> int:
        """Bytes recorded and not yet known to be in the file."""
        return self._appender.pending if self._appender is not None else len(self._early)

    @property
    def recorded(self) -> int:
        """Bytes of output in whole frames known to be in the file."""
        return self._settle()[1]

    def _settle(self) -> tuple[int, int]:
        """The last frame known to be written: (its end, the output up to it)."""
        written = self._appender.written if self._appender is not None else 0
        frames = self._frames
        while len(frames) > 1 and frames[1][0] <= written:
            frames.popleft()
        return frames[0]

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
        self._loop = loop = asyncio.get_running_loop()
        self._appender = Appender(fd, len(self._header),
                                  functools.partial(loop.run_in_executor, None),
                                  on_error=self._write_failed)
        self._appender.write(self._early)  # anything recorded before start()
        self._early = bytearray()
        self._unsynced = True
        self._task = loop.create_task(self._run(), name=f"recorder {self.meta.session_id}")

    # -- the hot path: SessionTap ---------------------------------------------

    def output(self, data: bytes) -> None:
        if self._stopped or not data:
            return
        header = self._writer.output_header(self._monotonic() - self._t0, len(data))
        self._record((header, data), len(data))

    def resize(self, cols: int, rows: int) -> None:
        if self._stopped:
            return
        try:
            frame = self._writer.frame_resize(self._monotonic() - self._t0, cols, rows)
        except BadParameter as exc:
            log.warning("resize not recorded session_id=%s reason=%r", self.meta.session_id,
                        str(exc))
            return
        self._record((frame,), 0)

    def _record(self, parts: tuple[bytes, ...], output: int) -> None:
        """Append one whole frame (``parts``), holding ``output`` bytes of output."""
        appender = self._appender
        try:
            for part in parts:
                if appender is None:
                    self._early += part
                else:
                    appender.write(part)  # may write a buffer itself, or map a new one
        except OSError as exc:
            self._fail(exc)
            return
        self._end += sum(len(part) for part in parts)
        self._output += output
        self._frames.append((self._end, self._output))
        self._unsynced = True
        if appender is not None:
            self._settle()  # forget the frames known to be written: memory stays bounded
            self.max_pending = max(self.max_pending, appender.pending)

    def flush(self) -> None:
        """Send what is recorded to be written (no fsync: the periodic flush does that)."""
        if self._appender is not None:
            self._appender.flush()

    def _write_failed(self, exc: OSError) -> None:
        """The appender's worker thread failed a write: stop on the loop."""
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self._fail, exc)

    def _fail(self, exc: OSError, *, on_loop: bool = True) -> None:
        """Stop recording, keep the file's whole frames, tell ``on_failure`` (once; at once
        on the loop's thread, else through the loop)."""
        self._stopped = True
        with self._failing:  # the loop and the thread finishing the file may both fail
            if self.error is not None:
                return
            self.error = exc
        if self._appender is not None:
            self._appender.stop(exc)  # e.g. an fsync failed: no write after the cut below
        end, kept = self._settle()
        self._frames = collections.deque([(end, kept)])
        log.error("recording stopped session_id=%s path=%s recorded_bytes=%d reason=%r",
                  self.meta.session_id, self.path, kept, str(exc))
        if self._fd is not None:
            try:  # a write cut short leaves part of a frame: drop it
                os.ftruncate(self._fd, end)
            except OSError as cut:
                log.error("recording not cut back to its last frame session_id=%s reason=%r",
                          self.meta.session_id, str(cut))
        if self._on_failure is None:
            return
        if on_loop:
            self._report(exc, kept)
        elif self._loop is not None:  # the worker thread that finishes the file
            self._loop.call_soon_threadsafe(self._report, exc, kept)

    def _report(self, exc: OSError, kept: int) -> None:
        assert self._on_failure is not None
        try:
            self._on_failure(exc, kept)
        except Exception:
            log.exception("recording failure hook failed session_id=%s", self.meta.session_id)

    # -- flushing and the end ----------------------------------------------------

    def end(self, then: Callable[[], None] | None = None) -> None:
        """The session is over: record nothing more; the task finishes the file.

        ``then`` is called on the loop once what was recorded is written out (before the
        fsync), a failure to write it reported first: so that the session can still tell
        its user before it reports its exit. Called at once if nothing was started.
        """
        self._stopped = True
        if self._task is None or self._ending.is_set():
            if then is not None:
                then()
            return
        self._then = then
        self._ending.set()

    def discard(self) -> None:
        """The session never ran (its child failed to start): end, and keep no file."""
        self.discarded = True
        self.end()

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
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._interval):
                    await self._ending.wait()
            self.flush()
            if self._ending.is_set():
                break  # no periodic fsync: the session's exit waits for _written_out
            await self._sync()
        await self._written_out()
        return await asyncio.to_thread(self._finish)

    async def _written_out(self) -> None:
        """Wait for the writes of what was recorded, report their failure, call ``then``."""
        appender = self._appender
        if appender is not None:
            await asyncio.to_thread(appender.wait)
            if appender.error is not None:
                self._fail(appender.error)
        then, self._then = self._then, None
        if then is not None:
            then()

    async def _sync(self) -> None:
        fd, appender = self._fd, self._appender
        if fd is None or appender is None or not self._unsynced:
            return
        self._unsynced = False
        try:
            await asyncio.to_thread(self._write_out, fd, appender)
            if not self._dir_synced:  # the new file's name, once
                await asyncio.to_thread(fsync_directory, self.directory)
                self._dir_synced = True
        except OSError as exc:
            self._fail(exc)

    @staticmethod
    def _write_out(fd: int, appender: Appender) -> None:
        """In a worker thread: wait for what was flushed to be written, then fsync."""
        appender.wait()
        if appender.error is not None:
            raise appender.error
        os.fsync(fd)

    def _finish(self) -> Path:
        """In a worker thread, after the last flush: write out, fsync, close, rename."""
        fd, self._fd = self._fd, None
        appender = self._appender
        assert fd is not None and appender is not None
        try:
            self._write_out(fd, appender)
        except OSError as exc:
            self._fail(exc, on_loop=False)
        finally:
            appender.close()
            os.close(fd)
        if self.discarded:
            with contextlib.suppress(OSError):
                os.unlink(self.path)
            return self.path
        final = self.path.with_suffix(FINAL)
        try:
            os.replace(self.path, final)
            fsync_directory(self.directory)
        except OSError as exc:
            self._fail(exc, on_loop=False)
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
