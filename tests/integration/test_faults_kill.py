"""kill -9 of each kind of process while a user's session runs and a recording or the
audit log is on its way: what the user sees, that the rest recovers by itself once the
process is started again, and that every audit event and recording byte arrives once.

The clusters run each service in a process of its own (the auth alone; the proxy,
joined with a proxy token; node1, joined through the proxy), so that one dies and the
others are watched. Each test runs sessions with unique markers before, across and
after the crash, then counts: each session's session.start, exec and session.end (or
session.abort) exactly once, each recording listed once and played back byte for byte.
test_recording_crash covers a node killed mid-session; here the node dies while it
uploads a large recording.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any

import pytest

from gatehouse.process.harness import (
    GSH,
    Client,
    Cluster,
    Process,
    in_parallel,
    join,
    wait_for,
    wait_offline,
    wait_online,
)

BIG = 10_000_000  # `seq 1 BIG`: ~79 MB of output, a recording of ~19 upload chunks (4 MiB)
SESSION_EVENTS = ("session.start", "exec", "session.end", "session.abort")
ONCE = {"session.start": 1, "exec": 1, "session.end": 1}
LEAF = "leaf.example.com"
ATTEMPTS = 3  # big sessions tried before one's upload is caught halfway
USER = "carol"


def _split(workdir: Path, name: str = "test.example.com") -> Cluster:
    """Not started: the auth alone in the cluster's process, the proxy in its own."""
    return Cluster(workdir, name=name, ssh=False, proxy_apart=True)


def _start_split(cluster: Cluster) -> None:
    cluster.start()
    cluster.join_node("node1", {"env": "dev"})


@pytest.fixture
def split(tmp_path: Path) -> Iterator[Cluster]:
    """Auth, proxy and node1, each a process of its own."""
    cluster = _split(tmp_path / "cluster")
    try:
        _start_split(cluster)
        yield cluster
    finally:
        cluster.stop(wait=False)


def _login(cluster: Cluster, home: Path) -> Client:
    """USER (access and auditor) logged in to ``cluster``."""
    cluster.add_user(USER, roles="access,auditor", logins="root")
    home.mkdir()
    me = Client(home, cluster.proxy)
    me.login(USER).ok()
    return me


def _newcomer_reaches_node1(cluster: Cluster, home: Path) -> None:
    """A user created now gets a session on node1: node1 follows its auth's trust again
    (its watch, lost with the crash, came back by itself; a stale snapshot lacks the user)."""
    cluster.add_user("dave", roles="access", logins="root")
    home.mkdir()
    dave = Client(home, cluster.proxy)
    dave.login("dave").ok()
    wait_for("node1 to know the new user", lambda: dave.ssh("root@node1", "true").rc == 0,
             timeout=30, interval=0.5)


def _logs_clean(*clusters: Cluster) -> None:
    """No process logged an error or a traceback: a crash elsewhere is not one."""
    for cluster in clusters:
        for p in (cluster.daemon, cluster.proxy_process, *cluster.nodes.values()):
            if p is not None:
                text = p.log_text()
                assert "Traceback" not in text and " ERROR " not in text, (p.log, text[-3000:])


def _kill(process: Process) -> None:
    """SIGKILL to its process group, as the OOM killer would: no goodbye, the kernel
    closes its connections."""
    os.killpg(process.pid, signal.SIGKILL)
    assert process.wait(10) == -signal.SIGKILL, f"{process.name} outlived SIGKILL"


class Live:
    """A session left running: prints ``marker``, then echoes the line it reads."""

    def __init__(self, client: Client, marker: str, *gsh_args: str) -> None:
        self.proc = subprocess.Popen(
            [str(GSH), "ssh", *gsh_args, "root@node1", f"echo {marker}; read line; echo $line"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            env=client.env())
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], 30)
        assert ready, f"the session {marker} printed nothing in 30 s"
        assert self.proc.stdout.readline() == f"{marker}\n".encode()

    def finish(self, line: str | None = None) -> tuple[int, str, str]:
        """Send ``line`` (if any) and end stdin; (exit status, rest of stdout, stderr)."""
        out, err = self.proc.communicate(None if line is None else f"{line}\n".encode(),
                                         timeout=30)
        return self.proc.returncode, out.decode(), err.decode()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


def _one_clear_line(rc: int, err: str) -> str:
    """What a user must see when there is no session: 255 and one line, no traceback."""
    lines = [line for line in err.splitlines() if line.strip()]
    assert rc == 255 and len(lines) == 1 and lines[0].startswith("error: "), (rc, err)
    return lines[0]


def _big_session(client: Client, marker: str) -> str:
    """Run `seq 1 BIG` on node1 (its command carries ``marker``); its output (checked)."""
    expected = "".join(f"{i}\n" for i in range(1, BIG + 1))
    res = client.ssh("root@node1", f": {marker}; seq 1 {BIG}")
    assert res.rc == 0 and res.out == expected, (res.rc, len(res.out), res.err)
    return expected


def _upload_under_way(auth_recordings: Path, skip: set[str], timeout: float) -> str:
    """Wait until a recording's second chunk is at the auth (a recording of one chunk
    arrives with its completion), not one of ``skip``; its session id. Polled every
    millisecond: the whole upload takes well under a second on an idle machine."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if auth_recordings.is_dir():
            for entry in auth_recordings.iterdir():
                if entry.name not in skip and (entry / "000001").exists():
                    return entry.name
        time.sleep(0.001)
    raise AssertionError(f"no recording upload reached {auth_recordings} in {timeout:.0f} s")


def _caught_mid_upload(client: Client, cluster: Cluster) -> tuple[str, str, str]:
    """A big session whose recording upload is held halfway: node1 is stopped (SIGSTOP)
    once the auth has part of it and before it has all of it. The upload is watched
    from while the session runs (looking only after `gsh ssh` returned missed whole
    uploads on an idle machine); the upload may begin while the node still sends the
    session's last output, so a node stopped before `gsh ssh` could return is let go
    and another session tried, as is one whose upload finished first (ATTEMPTS at
    most). (The session's marker, its id, its output); node1 is left stopped."""
    node = cluster.nodes["node1"]
    on_node = cluster.workdir / "node1-data" / "recordings"
    seen: set[str] = set()
    with ThreadPoolExecutor(1) as pool:
        for attempt in range(ATTEMPTS):
            marker = f"fk-big-{attempt}"
            session = pool.submit(_big_session, client, marker)
            sid = _upload_under_way(cluster.data_dir / "recordings", seen, timeout=90)
            os.kill(node.pid, signal.SIGSTOP)
            seen.add(sid)
            done, _ = wait([session], timeout=10)
            if done and (on_node / f"{sid}.rec").exists():
                return marker, sid, session.result()
            os.kill(node.pid, signal.SIGCONT)
            session.result()  # it ends once the node goes on
    raise AssertionError(f"{ATTEMPTS} recording uploads could not be held halfway")


def _tally(events: list[dict[str, Any]], markers: list[str]) -> dict[str, dict[str, int]]:
    """Per marker: how often each session event names the one session whose command
    carries the marker."""
    tally: dict[str, dict[str, int]] = {}
    for marker in markers:
        sessions = [e["session_id"] for e in events
                    if e["event"] == "exec" and marker in e["fields"]["command"]]
        counts = Counter(e["event"] for e in events
                         if e["session_id"] in sessions and e["event"] in SESSION_EVENTS)
        tally[marker] = {**counts, **({"sessions": len(set(sessions))}
                                      if len(set(sessions)) != 1 else {})}
    return tally


def _settled(cluster: Cluster, markers: list[str], of: str = "") -> dict[str, dict[str, int]]:
    """The tally of the markers' session events (of cluster ``of``, default its own),
    once each of those sessions has ended (or been aborted)."""
    own = of or cluster.name

    def ended() -> dict[str, dict[str, int]] | None:
        events = [e for e in cluster.events() if e["cluster"] == own]
        tally = _tally(events, markers)
        done = all(t.get("session.end", 0) + t.get("session.abort", 0) for t in tally.values())
        return tally if done else None

    return wait_for(f"the sessions {markers} ended in {own}'s audit log", ended, timeout=30)


def _session_of(cluster: Cluster, marker: str, of: str = "") -> str:
    own = of or cluster.name
    return str(next(e["session_id"] for e in cluster.events()
                    if e["cluster"] == own and e["event"] == "exec"
                    and marker in e["fields"]["command"]))


def _recordings(client: Client, session_ids: list[str], *args: str) -> dict[str, int]:
    """How often each session's recording is listed, once all are."""
    def listed() -> dict[str, int] | None:
        found = client.gsh("recordings", "ls", "--format=json", *args).ok().json()
        counts = Counter(r["session_id"] for r in found)
        return {s: counts[s] for s in session_ids} if all(counts[s] for s in session_ids) \
            else None

    return wait_for("the recordings", listed, timeout=30)


def test_the_auth_killed(split: Cluster, tmp_path: Path) -> None:
    """Sessions under way go on; new ones are refused with a line until the auth is
    back; the events and the recording upload it missed arrive once it is."""
    me = _login(split, tmp_path / "home")
    me.ssh("root@node1", "echo fk-a").ok()
    live = Live(me, "fk-live")
    try:
        marker, sid, big = _caught_mid_upload(me, split)
        assert split.daemon is not None
        _kill(split.daemon)
        os.kill(split.nodes["node1"].pid, signal.SIGCONT)

        down = me.ssh("root@node1", "echo fk-down")
        assert "cannot reach the auth" in _one_clear_line(down.rc, down.err)
        # The session under way does not need the auth: it goes on and ends normally.
        assert live.finish("fk-live-after") == (0, "fk-live-after\n", "")
    finally:
        live.kill()

    split.restart()
    assert me.ssh("root@node1", "echo fk-c").ok().out == "fk-c\n"
    markers = ["fk-a", "fk-live", marker, "fk-c"]
    assert _settled(split, markers) == dict.fromkeys(markers, ONCE)
    assert _tally(split.events(), ["fk-down"]) == {"fk-down": {"sessions": 0}}
    # The proxy's refusal while the auth was away is audited once it is back, once.
    refused = wait_for("the refusal's audit", lambda: [
        e for e in split.events() if e["event"] == "proxy.dial.denied"
        and e["user"] == USER and "cannot reach the auth" in e["message"]], timeout=15)
    assert len(refused) == 1, refused
    sessions = {m: _session_of(split, m) for m in markers}
    assert _recordings(me, list(sessions.values())) == dict.fromkeys(sessions.values(), 1)
    assert me.gsh("play", sessions["fk-live"]).ok().out == "fk-live\nfk-live-after\n"
    assert me.gsh("play", sid).ok().out == big
    assert sessions[marker] == sid
    _newcomer_reaches_node1(split, tmp_path / "dave")
    _logs_clean(split)


def test_the_proxy_killed(split: Cluster, tmp_path: Path) -> None:
    """The session through it ends with one line; the node's upload through it waits;
    the proxy restarted with the identity it joined with serves again, and the node's
    recording and events arrive once."""
    me = _login(split, tmp_path / "home")
    me.ssh("root@node1", "echo fk-a").ok()
    live = Live(me, "fk-live")
    try:
        marker, sid, big = _caught_mid_upload(me, split)
        assert split.proxy_process is not None
        _kill(split.proxy_process)
        os.kill(split.nodes["node1"].pid, signal.SIGCONT)

        rc, out, err = live.finish()
        assert out == "" and "connection to node1" in _one_clear_line(rc, err)
    finally:
        live.kill()
    down = me.ssh("root@node1", "echo fk-down")
    assert "cannot reach proxy" in _one_clear_line(down.rc, down.err)

    split.start_proxy()
    assert me.ssh("root@node1", "echo fk-c").ok().out == "fk-c\n"
    markers = ["fk-a", "fk-live", marker, "fk-c"]
    assert _settled(split, markers) == dict.fromkeys(markers, ONCE)
    sessions = {m: _session_of(split, m) for m in markers}
    assert _recordings(me, list(sessions.values())) == dict.fromkeys(sessions.values(), 1)
    assert me.gsh("play", sessions["fk-live"]).ok().out == "fk-live\n"
    assert me.gsh("play", sid).ok().out == big
    joins = [e for e in split.events() if e["event"] == "join"]
    assert Counter(e["fields"]["role"] for e in joins) == {"proxy": 1, "node": 1}
    _newcomer_reaches_node1(split, tmp_path / "dave")
    _logs_clean(split)


def test_the_node_killed_while_it_uploads_a_recording(split: Cluster, tmp_path: Path) -> None:
    """The recording whose upload was cut short is uploaded once the node is back, once;
    the session it cut (a recovered recording) is aborted once, its bytes kept once."""
    me = _login(split, tmp_path / "home")
    me.ssh("root@node1", "echo fk-a").ok()
    live = Live(me, "fk-live")
    try:
        # The big session also takes node1 past its recorder's flush of the live one.
        marker, sid, big = _caught_mid_upload(me, split)
        _kill(split.nodes["node1"])

        rc, out, err = live.finish()
        assert out == "" and "connection to node1" in _one_clear_line(rc, err)
    finally:
        live.kill()
    down = me.ssh("root@node1", "echo fk-down")
    assert "is unreachable" in _one_clear_line(down.rc, down.err)

    split.nodes["node1"].start().wait_up()
    assert me.ssh("root@node1", "echo fk-c").ok().out == "fk-c\n"
    markers = ["fk-a", marker, "fk-c"]
    assert _settled(split, [*markers, "fk-live"]) == {
        **dict.fromkeys(markers, ONCE),
        "fk-live": {"session.start": 1, "exec": 1, "session.abort": 1}}
    sessions = {m: _session_of(split, m) for m in [*markers, "fk-live"]}
    assert _recordings(me, list(sessions.values())) == dict.fromkeys(sessions.values(), 1)
    assert me.gsh("play", sid).ok().out == big
    assert me.gsh("play", sessions["fk-live"]).ok().out == "fk-live\n"
    _logs_clean(split)


@pytest.fixture
def root_and_leaf(tmp_path: Path) -> Iterator[tuple[Cluster, Cluster]]:
    """A root (one process) and a leaf whose auth, proxy and node1 are processes of
    their own, joined: the root's access and auditor map to the leaf's."""
    root = Cluster(tmp_path / "root", name="root.example.com")
    leaf = _split(tmp_path / "leaf", LEAF)
    try:
        in_parallel(root.start, lambda: _start_split(leaf))
        join(leaf, root, "{remote: access, local: [access]}\n{remote: auditor, local: [auditor]}")
        yield root, leaf
    finally:
        root.stop(wait=False)
        leaf.stop(wait=False)


def test_a_leafs_proxy_killed(root_and_leaf: tuple[Cluster, Cluster], tmp_path: Path) -> None:
    """The root user's session into the leaf ends with one line, the leaf shows offline,
    then online again once its proxy is back (no operator action): its tunnel and the
    forwarding of its audit log resume, and the root has each event once."""
    root, leaf = root_and_leaf
    me = _login(root, tmp_path / "home")
    into_leaf = f"--cluster={LEAF}"
    me.ssh(into_leaf, "root@node1", "echo fk-a").ok()
    live = Live(me, "fk-live", into_leaf)
    try:
        assert leaf.proxy_process is not None
        _kill(leaf.proxy_process)
        rc, out, err = live.finish()
        assert out == "" and "connection to node1" in _one_clear_line(rc, err)
    finally:
        live.kill()
    wait_offline(root, LEAF)
    down = me.ssh(into_leaf, "root@node1", "echo fk-down")
    assert "is offline" in _one_clear_line(down.rc, down.err)

    leaf.start_proxy()
    wait_online(root, LEAF)
    assert me.ssh(into_leaf, "root@node1", "echo fk-c").ok().out == "fk-c\n"
    markers = ["fk-a", "fk-live", "fk-c"]
    assert _settled(leaf, markers) == dict.fromkeys(markers, ONCE)
    assert _settled(root, markers, of=LEAF) == dict.fromkeys(markers, ONCE)
    sessions = [_session_of(root, m, of=LEAF) for m in markers]
    assert _recordings(me, sessions, into_leaf) == dict.fromkeys(sessions, 1)
    assert me.gsh("play", sessions[1]).ok().out == "fk-live\n"
    _logs_clean(root, leaf)
