"""kill -9 of a node mid-session: the recording up to the crash survives, and the
audit log says the session was aborted."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable

from gatehouse.process.harness import GSH, Client, Cluster, wait_for


def test_node_killed_mid_session_leaves_a_playable_recording(
    fresh_cluster: Cluster, make_client: Callable[[Cluster], Client], username: str,
) -> None:
    cluster = fresh_cluster
    node = cluster.join_node("node2", {"env": "crash"}, via="auth")
    cluster.add_user(username, roles="access,auditor", logins="root")
    client = make_client(cluster)
    client.login(username).ok()

    session = subprocess.Popen(
        [str(GSH), "ssh", "root@node2", "echo before-crash; sleep 20; echo never-seen"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=client.env())
    try:
        assert session.stdout is not None
        assert session.stdout.readline() == b"before-crash\n"
        time.sleep(1.5)  # past the recorder's periodic flush
        os.killpg(node.pid, signal.SIGKILL)
        assert node.proc is not None
        node.proc.wait(10)
    finally:
        session.kill()
        session.wait(10)

    node.start()  # the same node, restarted: it recovers and uploads the recording
    aborted = cluster.wait_event("the aborted session", lambda e: e["event"] ==
                                 "session.abort" and e["user"] == username, timeout=30)
    sid = aborted["session_id"]
    listed = wait_for("the recovered recording", lambda: any(
        r["session_id"] == sid for r in client.gsh("recordings", "ls", "--format=json")
        .ok().json()), timeout=30)
    assert listed
    assert client.gsh("play", sid).out == "before-crash\n"
