"""Clock skew between a leaf and its root: the leaf's processes (its daemon and its
gatectl) run with a wall clock 10 minutes ahead of the root's, or 10 minutes behind.

The shift is libfaketime's (the `faketime` package, LD_PRELOAD), with the monotonic
clock left alone so that asyncio's timers run in real time. What holds: the leaf
joins and its tunnel stays up (each side accepts the other's new certificates: they
start pki.x509.BACKDATE in the past); a root user's certificates are accepted by the
leaf's proxy and node; the leaf's events at the root carry the root's receive time
(the leaf's own is kept as ``leaf_time``), sort among the root's own events in the
order they happened, and are stored once.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import glob
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gatehouse.process.harness import Client, Cluster, in_parallel, join, wait_for

ROOT, LEAF = "sso.example.com", "us-east-1a"
SKEW = dt.timedelta(minutes=10)
CLOSE = dt.timedelta(minutes=2)  # slack when comparing a time with the expected one
EVENTS = ("session.start", "exec", "session.end")


def _faketime(shift: str) -> tuple[str, ...]:
    """A prefix that runs a command with its wall clock shifted by ``shift`` ("+10m")."""
    found = sorted(glob.glob("/usr/lib/*/faketime/libfaketimeMT.so.1"))
    if not found:
        pytest.skip("needs libfaketime (the faketime package; scripts/setup.sh installs it)")
    return ("env", f"LD_PRELOAD={found[0]}", f"FAKETIME={shift}",
            "FAKETIME_DONT_FAKE_MONOTONIC=1")


@pytest.fixture(params=[1, -1], ids=["leaf-ahead", "leaf-behind"])
def skew(request: pytest.FixtureRequest) -> dt.timedelta:
    """How far the leaf's clock is from the root's."""
    return SKEW * int(request.param)


@pytest.fixture
def clusters(skew: dt.timedelta, tmp_path: Path) -> Iterator[tuple[Cluster, Cluster]]:
    """(root, leaf), the leaf's clock off by ``skew``, not joined yet."""
    minutes = int(skew.total_seconds() // 60)
    root = Cluster(tmp_path / "root", name=ROOT)
    leaf = Cluster(tmp_path / "leaf", name=LEAF, prefix=_faketime(f"{minutes:+d}m"))
    try:
        in_parallel(root.start, leaf.start)
        yield root, leaf
    finally:
        leaf.stop()
        root.stop()


def _time(event: dict[str, Any], field: str = "time") -> dt.datetime:
    return dt.datetime.fromisoformat(event[field])


def _session(me: Client, marker: str, *cluster: str) -> None:
    res = me.gsh("ssh", *cluster, "root@node1", f"echo {marker}")
    assert res.rc == 0 and res.out == f"{marker}\n", res


def _events_of(root: Cluster, marker: str) -> list[dict[str, Any]]:
    """The root's events of the session that said ``marker``, once its end is there."""

    def found() -> list[dict[str, Any]] | None:
        events = root.events()
        ids = {e["session_id"] for e in events
               if e["event"] == "session.start" and marker in (e["fields"].get("command") or "")}
        mine = [e for e in events if e["session_id"] in ids]
        return mine if any(e["event"] == "session.end" for e in mine) else None

    return wait_for(f"the events of session {marker} at the root", found, timeout=30,
                    interval=0.5)


def test_a_leaf_with_a_skewed_clock(clusters: tuple[Cluster, Cluster],
                                    skew: dt.timedelta, tmp_path: Path) -> None:
    root, leaf = clusters
    # The shift is real: the leaf stamps its own events with its own clock.
    now = dt.datetime.now(dt.UTC)
    leaf_own = leaf.events()
    assert leaf_own and all(abs(_time(e) - (now + skew)) < CLOSE for e in leaf_own), leaf_own

    join(leaf, root, "{remote: access, local: [access]}")

    alice = root.logged_in("alice", tmp_path / "alice")
    # The leaf's proxy takes the relayed X.509 certificate, its node the SSH one.
    nodes = alice.gsh("ls", f"--cluster={LEAF}", "--format=json").ok().json()
    assert [n["spec"]["hostname"] for n in nodes] == ["node1"]

    # A leaf session, one of the root's own, another leaf session: each seen at the root
    # before the next starts, so this is the order they happened in.
    first, own, last = (f"{what}-{uuid.uuid4().hex[:8]}" for what in ("first", "own", "last"))
    _session(alice, first, f"--cluster={LEAF}")
    first_events = _events_of(root, first)
    _session(alice, own)
    own_events = _events_of(root, own)
    _session(alice, last, f"--cluster={LEAF}")
    last_events = _events_of(root, last)

    for marker, events in ((first, first_events), (last, last_events)):
        assert sorted(e["event"] for e in events) == sorted(EVENTS), (marker, events)
        for e in events:
            assert e["cluster"] == LEAF
            # Filed at the root's time; the leaf's own (off by the skew) kept beside it.
            assert abs(_time(e) - dt.datetime.now(dt.UTC)) < CLOSE, e
            assert abs(_time(e, "leaf_time") - _time(e) - skew) < CLOSE, e
    assert sorted(e["event"] for e in own_events) == sorted(EVENTS)
    assert all(e["cluster"] == ROOT and e["leaf_time"] is None for e in own_events)

    # Newest first, in the order they happened, each once.
    listed = [e["id"] for e in root.events()]
    assert len(listed) == len(set(listed))
    place = {event_id: i for i, event_id in enumerate(listed)}
    spans = [sorted(place[e["id"]] for e in events)
             for events in (last_events, own_events, first_events)]
    assert spans[0][-1] < spans[1][0] and spans[1][-1] < spans[2][0], spans
    times = [_time(e) for e in root.events()]
    assert times == sorted(times, reverse=True)


def test_a_client_clock_far_behind_is_named_as_the_cause(tmp_path: Path) -> None:
    """A gsh whose clock is further behind its cluster's than certificates are backdated
    (pki.x509.BACKDATE) sees the proxy's certificate as not valid yet: it says so in one
    line that points at the clock, for the API (gsh ls) and the dial (gsh ssh) alike."""
    root = Cluster(tmp_path / "root", name=ROOT)
    root.start()
    try:
        alice = root.logged_in("alice", tmp_path / "alice")
        behind = dataclasses.replace(alice, prefix=_faketime("-30m"))
        for args in (("ls",), ("ssh", "root@node1", "true")):
            res = behind.gsh(*args)
            assert res.rc != 0
            (line,) = res.err.strip().splitlines()
            assert "certificate is not valid yet by this machine's clock" in line, line
            assert "the clock is likely behind" in line, line
        alice.gsh("ssh", "root@node1", "true").ok()  # the same profile, the right clock
    finally:
        root.stop()
