"""Recordings leave the node for its auth when their session ends (and, after a crash
or a refusal, when the node starts again): chunk by chunk, then the metadata; the
local file is removed only once the auth has it all."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import logging
import mmap
import os
from collections.abc import Callable
from pathlib import Path

from gatehouse.errors import (
    AlreadyExists,
    BadParameter,
    ConnectionProblem,
    GatehouseError,
    LimitExceeded,
)
from gatehouse.wire import recording
from gatehouse.wire.authapi import AuthAPI, RecordingDone
from gatehouse.wire.names import RECORDING_CHUNK, RECORDING_TAIL

__all__ = ["MAX_DELAY", "upload", "upload_with_retries"]

log = logging.getLogger(__name__)

MAX_DELAY = 30.0  # seconds between two tries of an upload, at most


async def upload(api: AuthAPI, path: Path) -> None:
    """Send one recording, a chunk at a time from a map of the file: a session of any
    length costs the node one chunk of memory, not the whole recording. The last
    bytes go with the completion: a short session's recording is one call."""
    with path.open("rb") as f:
        if os.fstat(f.fileno()).st_size == 0:
            raise BadParameter("empty file")
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
            small = len(data) <= RECORDING_TAIL  # read at once, no worker thread
            summary = (recording.summarize(data) if small
                       else await asyncio.to_thread(recording.summarize, data))
            meta = summary.meta
            tail_at = len(data) - min(len(data), RECORDING_TAIL)
            offsets = range(0, tail_at, RECORDING_CHUNK)
            for index, offset in enumerate(offsets):
                chunk = await asyncio.to_thread(
                    data.__getitem__, slice(offset, min(offset + RECORDING_CHUNK, tail_at)))
                await api.put_recording_chunk(meta.session_id, index, chunk)
            tail = base64.b64encode(data[tail_at:]).decode()
    end = meta.start + dt.timedelta(seconds=summary.duration)
    await api.complete_recording(meta.session_id, RecordingDone(
        user=meta.user, login=meta.login, command=meta.command,
        start=meta.start.isoformat(), end=end.isoformat(), truncated=summary.truncated,
        tail=tail, tail_index=len(offsets)))
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
