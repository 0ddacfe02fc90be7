"""Recordings leave the node for its auth when their session ends (and, after a crash,
when the node starts again): chunk by chunk, then the metadata; the local file is
removed only once the auth has it all."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from pathlib import Path

from gatehouse import recording
from gatehouse.client.api import APIClient
from gatehouse.errors import BadParameter, ConnectionProblem, GatehouseError
from gatehouse.services.recordings import CHUNK

__all__ = ["upload", "upload_with_retries"]

log = logging.getLogger(__name__)


async def upload(api: APIClient, path: Path) -> None:
    data = await asyncio.to_thread(path.read_bytes)
    rec = recording.decode(data)
    meta = rec.meta
    for index, offset in enumerate(range(0, max(len(data), 1), CHUNK)):
        await api.put_bytes(f"/v1/recordings/{meta.session_id}/chunks/{index}",
                            data[offset:offset + CHUNK])
    end = meta.start + dt.timedelta(seconds=rec.duration)
    await api.post(f"/v1/recordings/{meta.session_id}/complete", {
        "user": meta.user, "login": meta.login, "command": meta.command,
        "start": meta.start.isoformat(), "end": end.isoformat(), "truncated": rec.truncated,
    })
    path.unlink()


async def upload_with_retries(api: APIClient, path: Path, attempts: int = 20) -> None:
    """Upload, retrying while the auth is unreachable; a file that cannot be read as a
    recording is kept (renamed .corrupt) for a person to look at."""
    for attempt in range(attempts):
        try:
            await upload(api, path)
            return
        except ConnectionProblem as exc:
            log.warning("upload of %s failed (%s); retrying", path.name, exc)
            await asyncio.sleep(min(0.5 * 2**attempt, 30))
        except BadParameter as exc:
            log.error("recording %s is unreadable (%s); kept as .corrupt", path.name, exc)
            path.rename(path.with_suffix(".corrupt"))
            return
        except GatehouseError as exc:
            log.error("the auth refused recording %s: %s; kept for the next start",
                      path.name, exc)
            return
    log.error("gave up uploading %s for now; it is uploaded at the next start", path.name)
