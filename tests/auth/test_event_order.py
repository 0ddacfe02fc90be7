"""Where events sort at the root, over the real API: by when this auth received them, so a
leaf cannot choose where its events land (and bury the root's own, or another leaf's
sessions, under back-dated ones); the search shows the newest first, a page at a time;
a leaf's recording is found by an index of its sessions, not by a search."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from pathlib import Path
from typing import Any

import pytest

from gatehouse.auth import catalog
from gatehouse.auth.intake import MAX_BATCH
from gatehouse.auth.server import AuthServer
from gatehouse.backend import Backend, Item
from gatehouse.client.authclient import AuthClient
from gatehouse.clock import FakeClock
from gatehouse.errors import BadParameter, NotFound
from gatehouse.services.events import AuditEvent
from gatehouse.types.remote_cluster import RemoteCluster
from gatehouse.types.resource import Metadata
from gatehouse.wire.authapi import EventQuery, EventsStored
from tests.auth.conftest import API
from tests.auth.samples import CLUSTER, NODE_ADDR

LEAF_A, LEAF_B = "us-east-1a", "us-east-1b"
FLOOD = 10_000 + MAX_BATCH  # past the 10,000 events the search used to return
YEARS = dt.timedelta(days=20 * 365)


@pytest.fixture
def clock() -> FakeClock:
    # The TLS handshake checks certificates against the real time, not this clock.
    return FakeClock(dt.datetime.now(dt.UTC).replace(microsecond=0))


@pytest.fixture
async def root_proxy(api: API, server: AuthServer) -> AuthClient:
    """This cluster as a root with leaves us-east-1a and us-east-1b; its proxy, which
    relays the leaves' events."""
    for leaf in (LEAF_A, LEAF_B):
        await server.trust.remotes.create(RemoteCluster(metadata=Metadata(name=leaf)))
    return AuthClient(await api.host("proxy", "proxy-hid", "proxy1", []))


@pytest.fixture
async def admin(api: API) -> AuthClient:
    return AuthClient(await api.admin())


def leaf_item(leaf: str, name: str, time: dt.datetime, **kw: Any) -> dict[str, Any]:
    """An event as a leaf forwards it: its own key (its time, the event's id) and the event."""
    ev = AuditEvent(event=name, time=time, cluster=leaf, **kw)
    return {"key": f"{int(time.timestamp() * 1_000_000):020d}/{ev.id}",
            "event": ev.to_json_obj()}


async def flood(proxy: AuthClient, leaf: str, name: str, time: dt.datetime, count: int,
                **kw: Any) -> None:
    """``count`` events of leaf's, all claiming ``time``, in batches as a leaf sends them."""
    for first in range(0, count, MAX_BATCH):
        batch = [leaf_item(leaf, name, time, session_id=str(uuid.uuid4()), **kw)
                 for _ in range(min(MAX_BATCH, count - first))]
        assert await proxy.store_leaf_events(leaf, batch) == EventsStored(
            stored=len(batch), rejected=0)


async def listed(api: AuthClient, **query: Any) -> list[dict[str, Any]]:
    """The first page of a search, as `gatectl events` asks for it."""
    return (await api.search_events(EventQuery(**query))).events


async def test_back_dated_leaf_events_do_not_hide_the_roots_own(
    root_proxy: AuthClient, admin: AuthClient, server: AuthServer, clock: FakeClock,
) -> None:
    await flood(root_proxy, LEAF_A, "user.login", clock.now() - YEARS, FLOOD, user="alice")
    clock.advance(dt.timedelta(seconds=1))
    await server.audit.emit("user.login", user="alice")
    await server.audit.emit("session.end", user="alice", login="root")
    newest = await listed(admin)
    assert [(e["event"], e["cluster"]) for e in newest[:2]] == [
        ("session.end", CLUSTER), ("user.login", CLUSTER)]
    logins = await listed(admin, types=["user.login"], user="alice")
    assert (logins[0]["cluster"], logins[1]["cluster"]) == (CLUSTER, LEAF_A)


async def test_forward_dated_leaf_events_do_not_stay_on_top(
    root_proxy: AuthClient, admin: AuthClient, server: AuthServer, clock: FakeClock,
) -> None:
    claimed = clock.now() + YEARS
    await flood(root_proxy, LEAF_A, "exec", claimed, MAX_BATCH)
    clock.advance(dt.timedelta(seconds=1))
    await server.audit.emit("user.login", user="alice")
    newest = await listed(admin)
    assert (newest[0]["event"], newest[0]["cluster"]) == ("user.login", CLUSTER)
    leafs = newest[1]
    assert leafs["cluster"] == LEAF_A
    # `time` is when the root received it; the leaf's own claim is kept beside it.
    assert dt.datetime.fromisoformat(leafs["time"]) < dt.datetime.fromisoformat(
        newest[0]["time"])
    assert dt.datetime.fromisoformat(leafs["leaf_time"]) == claimed


async def test_the_default_view_shows_the_newest_past_ten_thousand_events(
    api: API, admin: AuthClient, clock: FakeClock,
) -> None:
    node = AuthClient(await api.host("node", "hid-1", "db1", [NODE_ADDR]))
    for _ in range(FLOOD // MAX_BATCH):
        batch = [AuditEvent(event="exec", time=clock.now(), cluster=CLUSTER).to_json_obj()
                 for _ in range(MAX_BATCH)]
        assert (await node.post_events(batch)).stored == MAX_BATCH
        clock.advance(dt.timedelta(seconds=1))
    last = AuditEvent(event="session.end", time=clock.now(), cluster=CLUSTER, user="alice")
    await node.post_events([last.to_json_obj()])
    newest = await listed(admin)
    assert (newest[0]["event"], newest[0]["user"]) == ("session.end", "alice")


async def test_a_leafs_recording_is_found_after_a_flood_of_session_events(
    root_proxy: AuthClient, admin: AuthClient, clock: FakeClock,
) -> None:
    session_id = str(uuid.uuid4())
    await root_proxy.store_leaf_events(LEAF_A, [
        leaf_item(LEAF_A, "session.start", clock.now(), session_id=session_id),
        leaf_item(LEAF_A, "session.end", clock.now(), session_id=session_id)])
    await flood(root_proxy, LEAF_B, "session.end", clock.now() - YEARS, FLOOD)
    assert await admin.recording_cluster(session_id) == LEAF_A


async def test_a_search_continues_from_its_cursor_over_the_api(
    root_proxy: AuthClient, admin: AuthClient, clock: FakeClock,
) -> None:
    await root_proxy.store_leaf_events(LEAF_A, [leaf_item(LEAF_A, "exec", clock.now(),
                                                          user=f"u{i}") for i in range(5)])
    first = await admin.search_events(EventQuery(limit=2, types=["exec"]))
    rest = await admin.search_events(EventQuery(limit=10, types=["exec"], cursor=first.next))
    assert [e["user"] for e in first.events + rest.events] == ["u4", "u3", "u2", "u1", "u0"]
    assert first.next and not rest.next
    with pytest.raises(BadParameter, match="event limit 0: expected 1 to 10000"):
        await admin.search_events(EventQuery(limit=0))


async def test_a_since_further_back_than_a_date_holds_is_a_bad_parameter(
    admin: AuthClient,
) -> None:
    with pytest.raises(BadParameter) as raised:
        await admin.search_events(EventQuery(since="99999999d"))
    assert str(raised.value) == ("since: '99999999d' is further back than 0001-01-01, the "
                                 "earliest date there is")
    assert await admin.search_events(EventQuery(since="3650d")) is not None


async def test_the_first_leaf_to_name_a_session_keeps_it(
    root_proxy: AuthClient, admin: AuthClient, clock: FakeClock,
) -> None:
    session_id = str(uuid.uuid4())
    for leaf in (LEAF_A, LEAF_B):
        await root_proxy.store_leaf_events(leaf, [
            leaf_item(leaf, "session.end", clock.now(), session_id=session_id)])
    assert await admin.recording_cluster(session_id) == LEAF_A
    with pytest.raises(NotFound, match=r"not found in sso\.example\.com or its leaves"):
        await admin.recording_cluster(str(uuid.uuid4()))


async def test_leaf_sessions_filed_by_an_earlier_version_are_indexed_at_start(
    backend: Backend, clock: FakeClock, tmp_path: Path,
) -> None:
    """Events a leaf forwarded before the index existed, under the leaf's time."""
    server = await AuthServer.open(backend, clock, CLUSTER, tmp_path / "recordings")
    await server.backend.delete(b"/leaf_sessions_version")  # as an earlier version left it
    session_id = str(uuid.uuid4())
    ev = AuditEvent(event="session.start", code="T2000I", time=clock.now() - YEARS,
                    cluster=LEAF_A, session_id=session_id)
    leaf_ts = int(ev.time.timestamp() * 1_000_000)
    await backend.put(Item(f"/events/{leaf_ts:020d}/~{LEAF_A}/{ev.id}".encode(),
                           json.dumps(ev.to_json_obj()).encode()))
    reopened = await AuthServer.open(backend, clock, CLUSTER, tmp_path / "recordings")
    assert await catalog.recording_cluster(reopened, session_id) == LEAF_A
    assert [e.id for e in (await reopened.audit.search()).events] == [ev.id]
