"""A full disk where recordings are written: on the node, and on the auth that keeps them.

The node writes a session's recording to ``<data_dir>/recordings`` and the auth keeps
the uploaded ones in its own ``<data_dir>/recordings``; here each is a tiny tmpfs
(mounted as root) that a session's output overflows. What a user and an auditor
expect (docs/security.md, "When a recording cannot be written"): the session goes
on, the user is told on stderr that it is no longer recorded, the audit log says so
with how much was recorded, what was recorded plays back exactly once and intact,
and the next session is recorded again as soon as there is room, with no restart.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from gatehouse.process.harness import Client, Cluster, Process, wait_for

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root")

LINES = 300_000  # `seq -w 1 LINES`: 7-byte numbered lines, 2.1 MB: more than the disk holds
OUTPUT = "".join(f"{i:06d}\n" for i in range(1, LINES + 1))
COMMAND = f"seq -w 1 {LINES}"


@contextlib.contextmanager
def tmpfs(directory: Path, size: str) -> Iterator[Path]:
    """A tmpfs of ``size`` mounted on ``directory`` (created), unmounted on exit."""
    directory.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs",
                    str(directory)], check=True, timeout=10)
    try:
        yield directory
    finally:
        subprocess.run(["umount", "--lazy", str(directory)], check=True, timeout=10)


def fill(directory: Path) -> Path:
    """A file taking every free byte of the file system holding ``directory``."""
    filler = directory / "filler"
    with filler.open("wb") as f:
        for _ in range(1024):  # 64 MiB at most: far more than the tmpfs holds
            try:
                f.write(b"\0" * 65536)
                f.flush()
            except OSError:
                break
        else:
            raise AssertionError(f"{directory} never filled up")
    return filler


def auditor(cluster: Cluster, make_client: Callable[[Cluster], Client], name: str) -> Client:
    cluster.add_user(name, roles="access,auditor", logins="root")
    me = make_client(cluster)
    me.login(name).ok()
    return me


def events_of(cluster: Cluster, event: str, session_id: str) -> list[dict[str, Any]]:
    return [e for e in cluster.events(f"--type={event}") if e["session_id"] == session_id]


def session_of(cluster: Cluster, user: str, command: str) -> str:
    """The id of ``user``'s newest session that ran ``command``, once its end is audited."""
    def ended() -> str | None:
        starts = [e for e in cluster.events("--type=exec", f"--user={user}")
                  if e["fields"]["command"] == command]
        if not starts:
            return None
        sid = str(starts[0]["session_id"])
        return sid if events_of(cluster, "session.end", sid) else None
    return wait_for(f"the end of {user}'s session", ended, timeout=30)


def played(client: Client, session_id: str) -> str:
    """The recording's output, once it is listed (uploaded)."""
    wait_for("the recording", lambda: any(
        r["session_id"] == session_id
        for r in client.gsh("recordings", "ls", "--format=json").ok().json()), timeout=60)
    return client.gsh("play", session_id).ok().out


def check_prefix(playback: str, recorded: int) -> None:
    """What was recorded plays back once, whole and in order: the session's first bytes."""
    assert 0 < len(playback) < len(OUTPUT)
    assert len(playback.encode()) == recorded
    assert playback == OUTPUT[:len(playback)]


@pytest.fixture
def tiny_node(fresh_cluster: Cluster, tmp_path: Path) -> Iterator[tuple[Process, Path]]:
    """Node ``disk`` whose recordings directory is a 1 MiB tmpfs."""
    recordings = fresh_cluster.workdir / "disk-data" / "recordings"
    with tmpfs(recordings, "1m"):
        node = fresh_cluster.join_node("disk", {"env": "disk"}, via="auth")
        try:
            yield node, recordings
        finally:
            fresh_cluster.nodes.pop("disk")
            node.stop()


def test_a_full_node_disk_stops_the_recording_not_the_session(
    fresh_cluster: Cluster, tiny_node: tuple[Process, Path],
    make_client: Callable[[Cluster], Client], username: str,
) -> None:
    cluster = fresh_cluster
    node, recordings = tiny_node
    user = auditor(cluster, make_client, username)

    # A session that outgrows the disk: the user sees all of it, and is told on stderr.
    res = user.ssh("root@disk", COMMAND).ok()
    assert res.out == OUTPUT
    assert res.err_lines == [
        "gatehouse: this session is no longer recorded: the node cannot write its "
        "recording ([Errno 28] No space left on device); the failure is audited"]
    sid = session_of(cluster, username, COMMAND)
    [failure] = wait_for("the audited failure", lambda: events_of(
        cluster, "session.recording.failure", sid))
    assert (failure["code"], failure["user"], failure["login"], failure["node"]) == (
        "T2006W", username, "root", "disk")
    assert failure["fields"]["reason"] == "[Errno 28] No space left on device"
    check_prefix(played(user, sid), failure["fields"]["recorded_bytes"])

    # The partial recording left the node once uploaded; the disk is filled by something
    # else now: a session cannot even start its recording, and says so.
    wait_for("the uploaded recording to leave the node",
             lambda: not any(recordings.iterdir()))
    filler = fill(recordings)
    res = user.ssh("root@disk", "echo unrecorded").ok()
    assert res.out == "unrecorded\n"
    assert res.err_lines == [
        "gatehouse: this session is not recorded: the node cannot write its "
        "recording ([Errno 28] No space left on device); the failure is audited"]
    sid = session_of(cluster, username, "echo unrecorded")
    [failure] = wait_for("the audited failure", lambda: events_of(
        cluster, "session.recording.failure", sid))
    assert failure["fields"]["recorded_bytes"] == 0
    [start] = events_of(cluster, "session.start", sid)
    assert start["fields"]["recorded"] is False
    assert sorted(p.name for p in recordings.iterdir()) == ["filler"]  # nothing half-made

    # Room again: the next session is recorded whole, by the same node process.
    filler.unlink()
    res = user.ssh("root@disk", f"{COMMAND} | head -n 1000").ok()
    assert (res.out, res.err) == (OUTPUT[:7000], "")
    sid = session_of(cluster, username, f"{COMMAND} | head -n 1000")
    assert played(user, sid) == OUTPUT[:7000]
    assert events_of(cluster, "session.recording.failure", sid) == []
    assert node.alive()


def test_a_full_auth_disk_holds_the_recording_on_the_node_until_there_is_room(
    tmp_path: Path, make_client: Callable[[Cluster], Client], username: str,
) -> None:
    cluster = Cluster(tmp_path / "cluster")
    with tmpfs(cluster.data_dir / "recordings", "512k") as recordings, cluster.running():
        node = cluster.join_node("far", {"env": "far"}, via="auth")
        user = auditor(cluster, make_client, username)
        res = user.ssh("root@far", COMMAND).ok()  # recorded whole on the node
        assert (res.out, res.err) == (OUTPUT, "")
        sid = session_of(cluster, username, COMMAND)
        [held] = wait_for("the audited upload failure", lambda: events_of(
            cluster, "session.upload.failure", sid), timeout=30)
        assert (held["code"], held["user"], held["node"]) == ("T2007W", username, "far")
        assert "No space left on device" in held["fields"]["reason"]
        kept = cluster.workdir / "far-data" / "recordings" / f"{sid}.rec"
        assert kept.is_file()  # the node keeps it
        assert sid not in {r["session_id"] for r in
                           user.gsh("recordings", "ls", "--format=json").ok().json()}

        # Room again on the auth: the node's retries get it through, with no restart.
        subprocess.run(["mount", "-o", "remount,size=8m", str(recordings)], check=True,
                       timeout=10)
        assert played(user, sid) == OUTPUT  # whole, once
        wait_for("the node to drop its copy", lambda: not kept.exists(), timeout=30)
        assert node.alive() and len(events_of(cluster, "session.upload.failure", sid)) == 1


STRICT_ROLE = """kind: role
version: v1
metadata: {name: recorded}
spec:
  options: {record_session: {default: strict}}
  allow: {logins: [root], node_labels: {"*": "*"}}
"""
STRICT = ("and role recorded requires every session recorded "
          "(options.record_session.ssh: strict); the failure is audited")
# 3 MB over 3 s or more (the disk holds 1 MiB), then a mark: whether the loop ran to its end
SLOW_LINES = 300


def slow_command(mark: Path) -> str:
    return (f"for i in $(seq 1 {SLOW_LINES}); do head -c 9999 /dev/zero | tr '\\0' x; echo;"
            f" sleep 0.01; done; touch {mark}")


def test_a_role_requiring_recording_ends_or_refuses_what_cannot_be_recorded(
    fresh_cluster: Cluster, tiny_node: tuple[Process, Path],
    make_client: Callable[[Cluster], Client], username: str, tmp_path: Path,
) -> None:
    """record_session strict: the session whose recording fails is ended (its command
    hung up, its output cut), and one whose recording cannot start never runs."""
    cluster = fresh_cluster
    node, recordings = tiny_node
    cluster.create(STRICT_ROLE).ok()
    cluster.add_user(username, roles="recorded,auditor", logins="root")
    user = make_client(cluster)
    user.login(username).ok()

    mark = tmp_path / "ran-to-the-end"
    res = user.ssh("root@disk", slow_command(mark))
    assert res.rc == 255, res
    assert res.err_lines == [
        "gatehouse: this session is ended: the node cannot write its recording "
        f"([Errno 28] No space left on device), {STRICT}"], res
    assert 0 < len(res.out) < SLOW_LINES * 10_000 and set(res.out) <= {"x", "\n"}
    sid = session_of(cluster, username, slow_command(mark))
    [failure] = wait_for("the audited failure", lambda: events_of(
        cluster, "session.recording.failure", sid))
    assert failure["fields"]["session_ended"] is True
    assert "the session was ended: role recorded requires" in failure["message"]
    [end] = events_of(cluster, "session.end", sid)
    assert (end["fields"]["exit_status"], end["fields"]["disconnected"]) == (255, False)
    time.sleep(4)  # longer than the loop had left: it was hung up, not left running
    assert not mark.exists()

    # The disk full before the session: it is refused, its command never runs.
    wait_for("the uploaded recording to leave the node",
             lambda: not any(recordings.iterdir()))
    fill(recordings)
    res = user.ssh("root@disk", f"touch {mark}")
    assert (res.rc, res.out) == (1, ""), res
    assert res.err_lines == [
        "gatehouse: this session cannot start: the node cannot write its recording "
        f"([Errno 28] No space left on device), {STRICT}"], res
    assert not mark.exists()
    [refused] = wait_for("the audited refusal", lambda: [
        e for e in cluster.events("--type=session.recording.failure", f"--user={username}")
        if "the session was refused" in e["message"]])
    assert refused["fields"]["recorded_bytes"] == 0
    assert events_of(cluster, "session.start", refused["session_id"]) == []
    assert sorted(p.name for p in recordings.iterdir()) == ["filler"]
    assert node.alive()
