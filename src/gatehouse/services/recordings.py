"""Session recordings kept by the auth: uploaded by nodes in chunks, listed and read back.

A recording's chunks (at most RECORDING_CHUNK bytes each) are files in a directory of
its own under the auth's recordings directory; its metadata is an item in the
backend, written last, once the chunks are on disk (a recording without
metadata is an upload in progress and is neither listed nor read). Listing
reads the metadata items only. Session ids are canonical UUIDs: anything else,
such as a path, is refused before it names a file or a key.

A root also indexes its leaves' sessions (session id -> leaf) as their session events
arrive, so that a leaf's recording is found by its id alone, in one read. The first
leaf to name a session keeps it.

Chunks are files rather than backend items because they are most of the bytes
an auth stores: as 1 MiB values in SQLite, a GiB of recording cost the leaf's
auth ~4 s of CPU in WAL writes and checkpoints, and grew the database that every
request reads. Auths that share one backend (PostgreSQL) share no directory, so
there a store made without a directory keeps the chunks as backend items
(``/recording_chunks/ID/NNNNNN``), and any auth serves any recording.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import logging
import os
from collections.abc import AsyncIterable, AsyncIterator, Callable
from pathlib import Path
from typing import Any

from gatehouse._sys.fdio import fsync_directory, write_uncached
from gatehouse.backend import Backend, Item, prefix_end
from gatehouse.errors import AlreadyExists, BadParameter, LimitExceeded, NotFound
from gatehouse.wire.names import RECORDING_CHUNK
from gatehouse.wire.recording import check_session_id, is_session_id

__all__ = ["KEYS", "LEAF_KEYS", "MAX_RECORDING", "RecordingStore"]

MAX_RECORDING = 4 << 30
log = logging.getLogger(__name__)

_FULL = (errno.ENOSPC, errno.EDQUOT)  # a full disk or quota: retried later, not an error
_META = "/recording_meta/"
_CHUNKS = "/recording_chunks/"  # + session id + "/" + 6-digit index, without a directory
_LEAF_SESSIONS = "/leaf_sessions/"  # + session id -> the leaf's name
_LEAF_SESSIONS_VERSION = b"/leaf_sessions_version"  # there: sessions filed before are indexed
# Recordings used to be backend items: <_OLD>ID/chunk/NNNNNN and <_OLD>ID/meta.
_OLD = b"/recordings/"
LEAF_KEYS = (_LEAF_SESSIONS.encode(), _LEAF_SESSIONS_VERSION)
KEYS = (_META.encode(), _CHUNKS.encode(), *LEAF_KEYS)
"""The prefixes of the items a RecordingStore keeps (in the audit log's backend)."""


class RecordingStore:
    """Recordings whose chunks are files under ``directory``, or backend items if None."""

    def __init__(self, backend: Backend, directory: Path | None) -> None:
        self._backend = backend
        self._directory = directory

    @property
    def directory(self) -> Path:
        if self._directory is None:
            raise BadParameter("this recording store keeps its chunks in the backend")
        return self._directory

    def _dir(self, session_id: str) -> Path:
        return self.directory / check_session_id(session_id)

    @staticmethod
    def _chunks_key(session_id: str) -> bytes:
        return f"{_CHUNKS}{check_session_id(session_id)}/".encode()

    @staticmethod
    def _meta_key(session_id: str) -> bytes:
        return f"{_META}{check_session_id(session_id)}".encode()

    async def put_chunk(self, session_id: str, index: int, data: bytes) -> None:
        """Store one chunk; a chunk sent again replaces the first, until the recording
        is complete: from then on it is AlreadyExists, whoever asks."""
        self._check_chunk(index, data)
        if await self._is_complete(session_id):
            raise _unchangeable(session_id)
        if self._directory is None:
            await self._backend.put(Item(self._chunks_key(session_id) + b"%06d" % index, data))
            return
        try:
            await asyncio.to_thread(self._write_chunk, self._dir(session_id), index, data)
        except OSError as exc:
            if exc.errno in _FULL:
                raise self._full(session_id, exc) from exc
            raise

    @staticmethod
    def _check_chunk(index: int, data: bytes) -> None:
        if not 0 <= index < MAX_RECORDING // RECORDING_CHUNK or len(data) > RECORDING_CHUNK:
            raise BadParameter(f"chunk {index} of {len(data)} bytes is out of bounds")

    async def _is_complete(self, session_id: str) -> bool:
        try:
            await self._backend.get(self._meta_key(session_id))
        except NotFound:
            return False
        return True

    def _write_chunk(self, directory: Path, index: int, data: bytes) -> None:
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        directory.mkdir(mode=0o700, exist_ok=True)
        tmp = directory / f"{index:06d}.part"
        try:
            write_uncached(tmp, data)  # read back rarely (play, copy): no cached copy
        except OSError:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)  # a full disk keeps no part of a chunk
            raise
        os.replace(tmp, directory / f"{index:06d}")

    async def complete(self, session_id: str, meta: dict[str, Any],
                       tail: tuple[int, bytes] | None = None) -> None:
        """Mark an upload finished with the recording's metadata (from its header),
        once its chunks (and ``tail``: its last chunk, (index, bytes)) are on disk;
        AlreadyExists if it was already."""
        if self._directory is None:
            await self._complete_items(session_id, tail)
        else:
            await self._complete_files(session_id, tail)
        try:
            await self._backend.create(Item(key=self._meta_key(session_id),
                                            value=json.dumps(meta).encode()))
        except AlreadyExists:
            raise _unchangeable(session_id) from None

    async def _complete_items(self, session_id: str, tail: tuple[int, bytes] | None) -> None:
        if tail is not None:
            await self.put_chunk(session_id, *tail)
        chunks = self._chunks_key(session_id)
        if not await self._backend.get_range(chunks, prefix_end(chunks), limit=1):
            raise BadParameter(f"recording {session_id} has no chunks")

    async def _complete_files(self, session_id: str, tail: tuple[int, bytes] | None) -> None:
        directory = self._dir(session_id)
        if tail is not None:
            index, data = tail
            self._check_chunk(index, data)
            if await self._is_complete(session_id):
                raise _unchangeable(session_id)

        def store() -> None:
            if tail is not None:
                self._write_chunk(directory, *tail)
            _sync_all(directory)

        try:
            await asyncio.to_thread(store)
        except OSError as exc:
            if exc.errno in _FULL:
                raise self._full(session_id, exc) from exc
            raise

    def _full(self, session_id: str, exc: OSError) -> LimitExceeded:
        """A full disk: for the node to retry later (it keeps the recording meanwhile)."""
        log.error("recording not stored: the recordings directory is full path=%s "
                  "session_id=%s reason=%r", self.directory, session_id, exc.strerror)
        return LimitExceeded(f"the auth cannot store recording {session_id} now: its "
                             f"recordings directory is full ({exc.strerror})")

    async def meta(self, session_id: str) -> dict[str, Any]:
        try:
            item = await self._backend.get(self._meta_key(session_id))
        except NotFound:
            raise NotFound(f"recording {session_id} not found") from None
        return dict(json.loads(item.value))

    async def list(self) -> list[dict[str, Any]]:
        start = _META.encode()
        items = await self._backend.get_range(start, prefix_end(start))
        return [json.loads(i.value) for i in items]

    async def add_leaf_session(self, session_id: str, leaf: str) -> bool:
        """Note that ``leaf`` holds the session (and so its recording), unless a leaf
        named it first or the id is no session id: True when noted."""
        if not is_session_id(session_id):
            return False
        try:
            await self._backend.create(Item(key=f"{_LEAF_SESSIONS}{session_id}".encode(),
                                            value=leaf.encode()))
        except AlreadyExists:
            return False
        return True

    async def leaf_of(self, session_id: str) -> str:
        """The leaf that holds the session; NotFound if no leaf named it."""
        try:
            item = await self._backend.get(f"{_LEAF_SESSIONS}{check_session_id(session_id)}"
                                           .encode())
        except NotFound:
            raise NotFound(f"no leaf holds session {session_id}") from None
        return item.value.decode()

    async def index_leaf_sessions(self, sessions: AsyncIterable[tuple[str, str]]) -> int:
        """Index, once, the leaf sessions (session id, leaf) filed before the index
        existed; returns how many were added."""
        with contextlib.suppress(NotFound):
            await self._backend.get(_LEAF_SESSIONS_VERSION)
            return 0
        added = 0
        async for session_id, leaf in sessions:
            added += await self.add_leaf_session(session_id, leaf)
        await self._backend.put(Item(_LEAF_SESSIONS_VERSION, b"1"))
        return added

    async def read(self, session_id: str) -> bytes:
        await self.meta(session_id)  # NotFound for an unknown or unfinished recording
        return b"".join([data async for _, data in self._chunks(session_id)])

    async def _chunks(self, session_id: str) -> AsyncIterator[tuple[int, bytes]]:
        """A recording's chunks (index, bytes) in order, read one at a time."""
        if self._directory is None:
            chunks = self._chunks_key(session_id)
            start = chunks
            while found := await self._backend.get_range(start, prefix_end(chunks), limit=1):
                start = found[0].key + b"\0"
                yield int(found[0].key[len(chunks):]), found[0].value
            return
        directory = self._dir(session_id)
        for name in await asyncio.to_thread(_chunk_names, directory):
            yield int(name), await asyncio.to_thread((directory / name).read_bytes)

    async def copy_to(self, other: RecordingStore, copied: Callable[[int], None]) -> int:
        """Copy every complete recording, its chunks then its metadata, into other (a
        stopped cluster's move to another backend); returns how many. ``copied(n)`` is
        told of each chunk's n bytes."""
        start, end, count = _META.encode(), prefix_end(_META.encode()), 0
        while page := await self._backend.get_range(start, end, 100):
            start = page[-1].key + b"\0"
            for item in page:
                session_id = item.key[len(_META):].decode()
                async for index, data in self._chunks(session_id):
                    await other.put_chunk(session_id, index, data)
                    copied(len(data))
                await other.complete(session_id, json.loads(item.value))
                count += 1
        return count

    async def move_from_backend(self) -> int:
        """Move recordings stored as backend items (before chunks were files) to the
        directory, one chunk at a time; returns how many recordings moved."""
        moved, end = 0, prefix_end(_OLD)
        while found := await self._backend.get_range(_OLD, end, limit=1):
            recording = found[0].key[:found[0].key.index(b"/", len(_OLD)) + 1]
            session_id = recording[len(_OLD):-1].decode()
            if await self._is_complete(session_id):  # moved by a start cut short
                await self._backend.delete_range(recording, prefix_end(recording))
                continue
            chunks = recording + b"chunk/"
            start = chunks
            while chunk := await self._backend.get_range(start, prefix_end(chunks), limit=1):
                await self.put_chunk(session_id, int(chunk[0].key[len(chunks):]),
                                     chunk[0].value)
                start = chunk[0].key + b"\0"
            try:
                old = await self._backend.get(recording + b"meta")
            except NotFound:
                pass  # an upload that never finished: its chunks wait for the rest
            else:
                await self.complete(session_id, json.loads(old.value))
                moved += 1
            await self._backend.delete_range(recording, prefix_end(recording))
        return moved


def _unchangeable(session_id: str) -> AlreadyExists:
    return AlreadyExists(f"recording {session_id} is complete: it cannot change")


def _sync_all(directory: Path) -> None:
    if not directory.is_dir():
        raise BadParameter(f"recording {directory.name} has no chunks")
    for path in directory.iterdir():
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    fsync_directory(directory)
    fsync_directory(directory.parent)


def _chunk_names(directory: Path) -> list[str]:
    try:
        return sorted(p.name for p in directory.iterdir() if p.name.isdigit())
    except FileNotFoundError:
        raise NotFound(f"recording {directory.name} has no chunks") from None
