"""The audit log of an SSH session: start, exec and end, with the §7 fields; `gatectl
events` lists the newest first, a page at a time."""

from __future__ import annotations

import datetime as dt
import re
import uuid
from typing import Any

from gatehouse.process.harness import Client, Cluster, wait_for

FIELDS = ("event", "code", "time", "cluster", "user", "login", "node", "session_id",
          "correlation_id")


def _session_events(cluster: Cluster, marker: str) -> dict[str, dict[str, Any]]:
    """session.start, exec and session.end of the session that ran ``echo marker``."""
    def found() -> dict[str, dict[str, Any]] | None:
        events = cluster.events("--type=session.start,exec,session.end", "--since=10m")
        execs = [e for e in events if e["event"] == "exec"
                 and marker in str(e.get("fields", {}).get("command", ""))]
        if not execs:
            return None
        sid = execs[0]["session_id"]
        mine = {e["event"]: e for e in events if e["session_id"] == sid}
        return mine if set(mine) == {"session.start", "exec", "session.end"} else None

    return wait_for(f"the audit events of session {marker}", found, timeout=15)


def test_session_events_carry_the_contract_fields(cluster: Cluster, alice: Client) -> None:
    marker = f"audit-{uuid.uuid4().hex[:8]}"
    before = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=5)
    assert alice.ssh("root@node1", f"echo {marker}; exit 3").rc == 3
    events = _session_events(cluster, marker)
    codes = {"session.start": "T2000I", "exec": "T3002I", "session.end": "T2004I"}
    for name, event in events.items():
        for key in FIELDS:
            assert event.get(key), (name, key, event)
        assert event["code"] == codes[name]
        assert event["cluster"] == cluster.name
        assert (event["user"], event["login"], event["node"]) == ("alice", "root", "node1")
        uuid.UUID(event["session_id"])
        when = dt.datetime.fromisoformat(event["time"])
        assert before <= when <= dt.datetime.now(dt.UTC), event
    assert len({e["session_id"] for e in events.values()}) == 1
    assert len({e["correlation_id"] for e in events.values()}) == 1
    start, end = events["session.start"], events["session.end"]
    assert dt.datetime.fromisoformat(start["time"]) <= dt.datetime.fromisoformat(end["time"])
    assert end["fields"]["exit_status"] == 3, end
    assert start["fields"]["recorded"] is True, start


def test_each_session_has_its_own_id(cluster: Cluster, alice: Client) -> None:
    first, second = (f"audit-{uuid.uuid4().hex[:8]}" for _ in range(2))
    alice.ssh("root@node1", f"echo {first}").ok()
    alice.ssh("root@node1", f"echo {second}").ok()
    a, b = _session_events(cluster, first), _session_events(cluster, second)
    assert a["exec"]["session_id"] != b["exec"]["session_id"]


def test_events_filters(cluster: Cluster, alice: Client) -> None:
    marker = f"audit-{uuid.uuid4().hex[:8]}"
    alice.ssh("root@node1", f"echo {marker}").ok()
    _session_events(cluster, marker)
    only = cluster.events("--type=session.start", "--user=alice")
    assert only and {(e["event"], e["user"]) for e in only} == {("session.start", "alice")}
    assert cluster.events("--user=nobody-at-all") == []
    assert cluster.events("--cluster=other.example.com") == []
    logins = cluster.events("--type=user.login", "--user=alice")
    assert logins and logins[0]["code"] == "T1000I"
    text = cluster.gatectl("events", "--type=session.start", "--user=alice").ok().out
    assert "session.start" in text and "alice" in text


def test_events_come_newest_first_a_page_at_a_time(cluster: Cluster, alice: Client) -> None:
    marker = f"audit-{uuid.uuid4().hex[:8]}"
    alice.ssh("root@node1", f"echo {marker}").ok()
    session = _session_events(cluster, marker)
    listed = [e["id"] for e in cluster.events("--type=session.start,session.end")]
    assert listed.index(session["session.end"]["id"]) < listed.index(
        session["session.start"]["id"])
    first = cluster.gatectl("events", "--limit=1", "--format=json").ok()
    [newest] = first.json()
    [hint] = first.err_lines
    cursor = re.fullmatch(r"# more events: add --cursor=(\S+) for the next page", hint)
    assert cursor, hint
    [older] = cluster.events("--limit=1", f"--cursor={cursor[1]}")
    ids = [e["id"] for e in cluster.events()]  # newer events may have come: they go on top
    assert ids[ids.index(newest["id"]) + 1] == older["id"]
    bad = cluster.gatectl("events", "--limit=0")
    assert bad.rc != 0 and len(bad.err_lines) == 1 and "event limit 0" in bad.err, bad
