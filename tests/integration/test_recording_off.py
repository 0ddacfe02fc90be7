"""`auth_service.session_recording: off`: sessions run and are audited as unrecorded,
and no recording is kept or uploaded anywhere."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from gatehouse.process.harness import Client, Cluster, wait_for


@pytest.fixture(scope="module")
def unrecorded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with Cluster(tmp_path_factory.mktemp("norec"),
                 session_recording="off").running(wait=False) as c:
        yield c


def test_sessions_are_audited_but_not_recorded(unrecorded: Cluster, tmp_path: Path) -> None:
    unrecorded.add_user("olga", roles="access,auditor", logins="root")
    olga = Client(tmp_path / "olga", unrecorded.proxy)
    olga.login("olga").ok()
    marker = f"norec-{uuid.uuid4().hex[:8]}"
    assert olga.ssh("root@node1", f"echo {marker}").ok().out == f"{marker}\n"

    def started() -> dict[str, object] | None:
        events = unrecorded.events("--type=session.start,session.end", "--since=10m")
        return next((e for e in events if e["event"] == "session.start"), None) \
            if any(e["event"] == "session.end" for e in events) else None

    start = wait_for("the session's audit events", started)
    assert start["fields"]["recorded"] is False, start  # type: ignore[index]
    # A recording lives in the node's recordings/ until uploaded, and is listed from
    # then on: looking in that order, one recording could not slip between the two.
    assert (unrecorded.data_dir / "audit").is_dir()  # the node's state directory
    assert list((unrecorded.data_dir / "recordings").glob("*")) == []
    assert olga.gsh("recordings", "ls", "--format=json").ok().json() == []


def test_a_bad_value_is_refused_with_the_field_named(tmp_path: Path) -> None:
    cluster = Cluster(tmp_path, session_recording="sometimes")
    cluster.write_config()
    res = cluster.gatectl("status")  # the config is read before anything else
    assert res.rc != 0
    assert "session_recording" in res.err, res.err
