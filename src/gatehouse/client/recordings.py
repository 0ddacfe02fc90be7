"""`gsh recordings ls` and `gsh play`: find a recording (here or in a leaf) and fetch it."""

from __future__ import annotations

from typing import Any

from gatehouse.client.login import api_for
from gatehouse.client.profile import Profile
from gatehouse.wire.recording import check_session_id

__all__ = ["fetch_recording", "list_recordings"]


async def list_recordings(profile: Profile, cluster: str) -> list[dict[str, Any]]:
    async with api_for(profile, "" if cluster == profile.cluster else cluster) as api:
        found = await api.list_recordings()
    return sorted(found, key=lambda r: str(r.get("start", "")))


async def fetch_recording(profile: Profile, session_id: str) -> bytes:
    """The recording's bytes, from whichever cluster holds it (ids are unique across
    clusters: the root knows a leaf's sessions from the leaf's forwarded audit)."""
    check_session_id(session_id)
    async with api_for(profile) as api:
        where = await api.recording_cluster(session_id)
    async with api_for(profile, "" if where == profile.cluster else where) as api:
        return await api.get_recording(session_id)
