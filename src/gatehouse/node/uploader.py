"""Recordings leave the node for its auth when their session ends (and, after a crash
or a refusal, when the node starts again): chunk by chunk, then the metadata; the
local file is removed only once the auth has it all."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import logging
import os
from collections.abc import Callable
from pathlib import Path

from gatehouse._sys.fdio import read_uncached, set_direct
from gatehouse.errors import (
    AlreadyExists,
    BadParameter,
    ConnectionProblem,
    GatehouseError,
    LimitExceeded,
)
from gatehouse.node.recorder import read_meta
from gatehouse.wire import recording
from gatehouse.wire.authapi import AuthAPI, RecordingDone
from gatehouse.wire.names import RECORDING_CHUNK, RECORDING_TAIL

__all__ = ["MAX_DELAY", "upload", "upload_with_retries"]

log = logging.getLogger(__name__)

MAX_DELAY = 30.0  # seconds between two tries of an upload, at most


async def upload(api: AuthAPI, path: Path) -> None:
    """Send one recording, a chunk at a time, read past the page cache as the recorder
    wrote it (a cached read-back into fresh pages cost these VMs more CPU than sending
    it): a session of any length costs the node one chunk of memory. The summary (its
    duration, whether it is truncated) is gathered on the way; the last bytes go with
    the completion, so a short session's recording is one call."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    try:
        size = os.fstat(fd).st_size
        if size == 0:
            raise BadParameter("empty file")
        session_id = read_meta(path).session_id  # the chunks' name, before the first
        set_direct(fd, True)
        summarizer = recording.Summarizer()

        def read(offset: int, length: int) -> bytes:
            piece = read_uncached(fd, offset, length)
            summarizer.feed(piece)  # here too: a recording of tiny frames takes a while
            return piece

        tail_at = size - min(size, RECORDING_TAIL)
        offsets = range(0, tail_at, RECORDING_CHUNK)
        for index, offset in enumerate(offsets):
            chunk = await asyncio.to_thread(
                read, offset, min(RECORDING_CHUNK, tail_at - offset))
            await api.put_recording_chunk(session_id, index, chunk)
        tail = await asyncio.to_thread(read, tail_at, size - tail_at)
    finally:
        os.close(fd)
    summary = summarizer.result()
    meta = summary.meta
    end = meta.start + dt.timedelta(seconds=summary.duration)
    await api.complete_recording(session_id, RecordingDone(
        user=meta.user, login=meta.login, command=meta.command,
        start=meta.start.isoformat(), end=end.isoformat(), truncated=summary.truncated,
        tail=base64.b64encode(tail).decode(), tail_index=len(offsets)))
    path.unlink()


async def upload_with_retries(api: AuthAPI, path: Path,
                              on_held: Callable[[str], None] | None = None) -> None:
    """Upload, retrying until it is done while the auth is unreachable or cannot store it
    now (LimitExceeded: its storage is full), at most MAX_DELAY apart; ``on_held`` gets
    the reason the first time the auth could not store it. A file that cannot be read as
    a recording is kept (renamed .corrupt) for a person to look at; one the auth refuses
    is kept for the node's next start."""
    delay = 0.5
    held = False
    while True:
        try:
            await upload(api, path)
            if held:
                log.info("recording %s stored by the auth at last", path.name)
            return
        except AlreadyExists:  # an earlier try got through, its answer did not
            log.info("recording %s was already uploaded", path.name)
            path.unlink()
            return
        except LimitExceeded as exc:
            log.warning("the auth cannot store %s now (%s); kept, retrying", path.name, exc)
            if not held and on_held is not None:
                on_held(str(exc))
            held = True
        except ConnectionProblem as exc:
            log.warning("upload of %s failed (%s); retrying", path.name, exc)
        except BadParameter as exc:
            log.error("recording %s is unreadable (%s); kept as .corrupt", path.name, exc)
            path.rename(path.with_suffix(".corrupt"))
            return
        except GatehouseError as exc:
            log.error("the auth refused recording %s: %s; kept for the next start",
                      path.name, exc)
            return
        await asyncio.sleep(delay)
        delay = min(delay * 2, MAX_DELAY)
