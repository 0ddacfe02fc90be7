"""Mistakes get one clear line and a non-zero exit; refusals are audited."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from pathlib import Path

from gatehouse.process.harness import GATEHOUSE, GSH, Client, Cluster, Process, base_env, run

WRONG = "wrong-password-123"


def test_wrong_password_is_refused_and_audited(cluster: Cluster, client: Client,
                                               username: str) -> None:
    cluster.add_user(username)
    res = client.login(username, WRONG)
    assert res.rc != 0 and res.out == "", res
    assert len(res.err_lines) == 1 and "invalid user name or password" in res.err, res
    assert not (client.home / "profile.json").exists()
    event = cluster.wait_event("a login failure event",
                               lambda e: e["event"] == "user.login.failure"
                               and e["user"] == username)
    assert event["code"] == "T1000W" and event["message"], event
    assert event["cluster"] == cluster.name


def test_unknown_user_gets_the_same_answer(cluster: Cluster, client: Client) -> None:
    res = client.login("nosuchuser", WRONG)
    assert res.rc != 0 and len(res.err_lines) == 1, res
    assert "invalid user name or password" in res.err


def test_five_failures_lock_the_user(cluster: Cluster, client: Client, username: str) -> None:
    password = cluster.add_user(username)
    for _ in range(5):
        assert client.login(username, WRONG).rc != 0
    res = client.login(username, password)
    assert res.rc != 0 and res.out == "", res
    assert len(res.err_lines) == 1 and "locked" in res.err, res
    assert not (client.home / "profile.json").exists()
    # Other users are not affected.
    other = f"{username}-other"
    cluster.add_user(other)
    client.login(other).ok()
    # An admin setting a new password unlocks the user.
    cluster.gatectl("users", "set-password", username, "--password-stdin",
                    input="a-brand-new-password\n").ok()
    client.login(username, "a-brand-new-password").ok()


def test_unknown_node(alice: Client) -> None:
    res = alice.ssh("root@nosuch", "true")
    assert res.rc == 255 and res.out == "", res
    assert len(res.err_lines) == 1 and "nosuch" in res.err, res


def test_bad_target_syntax(alice: Client) -> None:
    res = alice.ssh("node1", "true")
    assert res.rc != 0 and res.out == "", res
    assert "LOGIN@NODE" in res.err, res


def test_login_to_an_unreachable_proxy(cluster: Cluster, client: Client) -> None:
    res = run([str(GSH), "login", "--proxy=127.0.0.1:1", "--user=x", "--password-stdin",
               "--insecure"], env=client.env(), input="whatever-password\n")
    assert res.rc != 0 and len(res.err_lines) == 1 and "127.0.0.1:1" in res.err, res


def test_bad_config_is_one_line(cluster: Cluster) -> None:
    bad = cluster.workdir / "bad.yaml"
    bad.write_text(cluster.config.read_text().replace("listen_addr", "listen_adr", 1))
    res = run([str(GATEHOUSE), "start", "-c", str(bad)], env=base_env(), timeout=20)
    assert res.rc != 0
    assert len(res.err_lines) == 1 and "listen_adr" in res.err, res


def test_second_start_on_same_data_dir_is_refused(
        fresh_cluster: Cluster, make_client: Callable[[Cluster], Client], username: str) -> None:
    c = fresh_cluster
    res = run([str(GATEHOUSE), "start", "-c", str(c.config)], env=base_env(), timeout=20)
    assert res.rc != 0, res
    lines = [*res.err_lines, *res.out.splitlines()]
    assert len(lines) == 1 and "in use" in lines[0] and str(c.data_dir) in lines[0], res
    assert c.daemon is not None and str(c.daemon.pid) in lines[0]
    # The first one keeps serving.
    assert c.daemon.alive()
    c.gatectl("status").ok()
    c.add_user(username)
    me = make_client(c)
    me.login(username).ok()
    assert me.ssh("root@node1", "echo still-here").out == "still-here\n"


def test_a_session_whose_connection_is_lost_ends_with_one_line(
        fresh_cluster: Cluster, make_client: Callable[[Cluster], Client], username: str,
        tmp_path: Path) -> None:
    c = fresh_cluster
    c.add_user(username)
    me = make_client(c)
    me.login(username).ok()
    # The remote loop ends at its first write once nobody reads its output.
    session = Process("gsh ssh", [str(GSH), "ssh", "root@node1",
                                  "while echo tick; do sleep 1; done"],
                      tmp_path / "session.log", env=me.env()).start()
    session.wait_ready("the session's first output", lambda: "tick" in session.output())
    assert c.daemon is not None
    os.killpg(c.daemon.pid, signal.SIGKILL)  # the proxy and the node vanish: no goodbye
    c.daemon.wait_stopped()
    assert session.wait(30) == 255, session.output()
    said = [line for line in session.output().splitlines() if line.strip() and line != "tick"]
    assert len(said) == 1 and "connection" in said[0] and "node1" in said[0], said
