"""Copy a stopped cluster's items from one place to another (``gatectl backend copy``).

A place is where a cluster keeps its state (users, roles, CAs with their keys, tokens,
trust), its audit log and its recordings: in one backend (SQLite, PostgreSQL, etcd
alone), or the audit log and recordings in a second one (etcd with
``storage.audit_conn_string``); recordings' chunks are files in a directory or items
beside their metadata. Items are copied as they are, expiries kept; recordings are
read from the source's layout and written in the destination's.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from gatehouse.backend import Backend, EtcdSettings, Item, prefix_end
from gatehouse.backend.copy import copy_range, is_empty
from gatehouse.errors import AlreadyExists, BadParameter, NotFound
from gatehouse.services import events, recordings
from gatehouse.services.proxies import ONLINE_WITHIN, ProxyStore
from gatehouse.services.recordings import RecordingStore

__all__ = ["Copied", "Place", "check_stopped", "copy_cluster", "shared_keys"]

_SOLE_AUTH = b"/sole_auth"  # services.sole_auth's claim, renewed while an auth runs
_PROBE = "/copy_probe/"  # + a random id: written to the destination, looked for at the source


@dataclass(frozen=True)
class Place:
    """Where a cluster keeps its items; ``audit`` may be ``state`` itself, and
    ``recordings`` is the chunks' directory (None: items in ``audit``)."""

    name: str  # for messages: the URI it was opened from
    state: Backend
    audit: Backend
    recordings: Path | None
    locked: bool = False  # its data directory's lock was checked: no process writes to it
    etcd: EtcdSettings | None = None  # state's peers and prefix, when state is on etcd


@dataclass
class Copied:
    items: int = 0
    audit_items: int = 0
    recordings: int = 0
    recording_bytes: int = 0


async def check_stopped(place: Place, now: dt.datetime) -> None:
    """BadParameter if the cluster at a shared place looks running: a proxy heartbeat
    within ONLINE_WITHIN, or an auth's live claim on etcd. (A place whose data
    directory's lock the caller checked is stopped: the auth holding it is its only
    writer.)"""
    if place.locked:
        return
    online = await ProxyStore(place.state).online(now)
    if online:
        beat = online[0].status.last_heartbeat
        ago = f"{(now - beat).total_seconds():.0f}s ago" if beat else "lately"
        raise BadParameter(f"{place.name}: the cluster looks running (proxy "
                           f"{online[0].metadata.name} sent a heartbeat {ago}; a stopped "
                           f"one's ages past {ONLINE_WITHIN.seconds}s); stop every auth and "
                           "proxy first")
    try:
        claim = await place.state.get(_SOLE_AUTH)
    except NotFound:
        return
    raise BadParameter(f"{place.name}: the cluster looks running (auth "
                       f"{claim.value.decode(errors='replace')} holds its claim); stop it first")


async def copy_cluster(src: Place, dst: Place, *, force: bool, now: dt.datetime,
                       progress: Callable[[str, int], None] = lambda what, n: None) -> Copied:
    """Copy everything at src into dst; BadParameter if dst is src's own storage or an
    etcd prefix inside it or holding it, if the
    cluster at src looks running (at ``now``: check_stopped), or if dst holds anything and
    not ``force`` (with force, dst's items are removed first), in that order.
    ``progress(what, n)`` is told of each step: n items of state or audit log, or n bytes
    of recordings."""
    await _check_apart(src, dst)
    await check_stopped(src, now)
    await _make_room(dst, force)
    done = Copied()
    owned = (*events.KEYS, *recordings.KEYS)

    def items(n: int) -> None:
        progress("items", n)

    done.items = await copy_range(src.state, dst.state, skip=owned, copied=items)

    def audit(n: int) -> None:
        progress("audit items", n)

    for prefix in (*events.KEYS, *recordings.LEAF_KEYS):  # recordings below
        done.audit_items += await copy_range(src.audit, dst.audit, prefix, copied=audit)

    def chunk(n: int) -> None:
        done.recording_bytes += n
        progress("recording bytes", n)

    try:
        done.recordings = await RecordingStore(src.audit, src.recordings).copy_to(
            RecordingStore(dst.audit, dst.recordings), chunk)
    except AlreadyExists as exc:
        raise BadParameter(f"{dst.name}: {exc} (use --force to replace it)") from None
    return done


async def _check_apart(src: Place, dst: Place) -> None:
    """BadParameter if dst shares keys with src: the same database named two ways, or
    etcd prefixes one inside the other. --force would remove the cluster it copies, and
    a copy into its own source reads back its writes without end. Named peers in common
    tell it at once; else an item written to each of dst's backends must not show in
    src's where src would see it (so peers named two ways are caught too, and nothing
    is written to the source)."""
    if src.etcd and dst.etcd and _same_peers(src.etcd, dst.etcd):
        shift = shared_keys(src.etcd.prefix, dst.etcd.prefix)
        if shift is not None:
            raise BadParameter(_overlap(src, dst, shift))
    probe = f"{_PROBE}{uuid.uuid4()}".encode()
    for backend in _backends(dst):
        for theirs in _backends(src):
            shift = shared_keys(_prefix(src, theirs), _prefix(dst, backend))
            if shift is None:
                continue
            into, seen = shift[0] + probe, shift[1] + probe
            await backend.put(Item(into, b""))
            try:
                await theirs.get(seen)
            except NotFound:
                continue
            finally:
                await backend.delete(into)
            raise BadParameter(_overlap(src, dst, shift))


def shared_keys(src_prefix: str | None, dst_prefix: str | None) -> tuple[bytes, bytes] | None:
    """Whether src's and dst's keys may be the same keys, if their stores are one: None
    if not, else (a, b) such that dst's key a+K would be src's key b+K. Prefixes are
    etcd's (None: a backend of another kind, whose keys are its own); an etcd prefix
    shares keys with itself and with one under it (``/g/a`` and ``/g/a/x``, not
    ``/g/ab``)."""
    if src_prefix is None or dst_prefix is None:
        return (b"", b"") if src_prefix == dst_prefix else None
    if src_prefix == dst_prefix:
        return b"", b""
    if src_prefix.startswith(dst_prefix + "/"):
        return src_prefix[len(dst_prefix):].encode(), b""
    if dst_prefix.startswith(src_prefix + "/"):
        return b"", dst_prefix[len(src_prefix):].encode()
    return None


def _same_peers(one: EtcdSettings, other: EtcdSettings) -> bool:
    def names(settings: EtcdSettings) -> set[str]:
        return {peer.lower().rstrip("/") for peer in settings.peers}

    return bool(names(one) & names(other))


def _prefix(place: Place, backend: Backend) -> str | None:
    return place.etcd.prefix if place.etcd is not None and backend is place.state else None


def _overlap(src: Place, dst: Place, shift: tuple[bytes, bytes]) -> str:
    if shift == (b"", b""):
        return (f"{dst.name} is where {src.name} keeps its items: copy to another database "
                "or prefix")
    return (f"{dst.name} and {src.name} overlap (one etcd prefix is inside the other): "
            "copy to a prefix apart from the source's")


def _backends(place: Place) -> list[Backend]:
    return [place.state] if place.audit is place.state else [place.state, place.audit]


async def _make_room(dst: Place, force: bool) -> None:
    full = [b for b in _backends(dst) if not await is_empty(b)]
    if full and not force:
        raise BadParameter(f"{dst.name} is not empty; refusing to copy into it "
                           "(--force removes what is there first)")
    for backend in full:
        await backend.delete_range(b"/", prefix_end(b"/"))
