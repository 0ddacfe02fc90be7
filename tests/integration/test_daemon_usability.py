"""A new user's mistakes and surprises with the daemon, the audit log and the auth, with
real processes: nothing vanishes from the audit log, a failed start leaves nothing
behind, and every failure is one line that says what to do."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import uuid
from pathlib import Path

import yaml

from gatehouse._sys.hostport import split_host_port
from gatehouse.config import DEFAULT_AUTH_ADDR, DEFAULT_PROXY_ADDR, DEFAULT_SSH_ADDR
from gatehouse.process.harness import (
    GATECTL,
    GATEHOUSE,
    GSH,
    Client,
    Cluster,
    base_env,
    run,
    wait_for,
    write_yaml,
)

DEFAULT_PORTS = [split_host_port(a)[1]
                 for a in (DEFAULT_AUTH_ADDR, DEFAULT_PROXY_ADDR, DEFAULT_SSH_ADDR)]


def test_a_long_command_is_audited_truncated_not_dropped(cluster: Cluster, alice: Client) -> None:
    marker = f"padded-{uuid.uuid4().hex[:8]}"
    padding = "x" * 70000
    res = alice.ssh("root@node1", f"echo {marker}; : {padding}; echo PADDED")
    assert res.out == f"{marker}\nPADDED\n", res

    def found() -> dict[str, dict[str, object]] | None:
        events = cluster.events("--type=session.start,exec,session.end", "--since=10m")
        mine = {e["event"]: e for e in events
                if marker in str(e.get("fields", {}).get("command", ""))}
        return mine if set(mine) == {"session.start", "exec"} else None

    events = wait_for("the padded session's start and exec events", found, timeout=15)
    for name, event in events.items():
        fields = event["fields"]
        assert isinstance(fields, dict)
        command = fields["command"]
        assert isinstance(command, str) and command.startswith(f"echo {marker}; : xxx"), name
        assert len(command) < 9000, (name, len(command))
        assert fields["truncated"] == {"command": len(f"echo {marker}; : {padding}; echo PADDED")}


# --- a second daemon on ports in use --------------------------------------------------------


def test_a_second_daemon_on_ports_in_use_fails_in_one_line_and_leaves_nothing(
        fresh_cluster: Cluster, tmp_path: Path) -> None:
    second = tmp_path / "second"
    second.mkdir()
    settings = yaml.safe_load(fresh_cluster.config.read_text())
    settings["gatehouse"]["data_dir"] = str(second / "data")
    config = write_yaml(second / "gatehouse.yaml", settings)
    res = run([str(GATEHOUSE), "start", "-c", str(config)], env=base_env(), timeout=30,
              cwd=second)
    assert res.rc != 0 and res.out == "", res
    assert len(res.err_lines) == 1, res
    line = res.err_lines[0]
    assert f":{fresh_cluster.auth_port}" in line and "in use" in line, line
    assert "auth_service.listen_addr" in line and str(config) in line, line
    assert not (second / "data").exists(), sorted(p.name for p in (second / "data").iterdir())
    fresh_cluster.gatectl("status").ok()  # the first one is untouched


def test_start_without_a_config_on_ports_in_use_leaves_no_data_dir(tmp_path: Path) -> None:
    held = []
    for port in DEFAULT_PORTS:  # held by this test, or by whatever holds them already
        sock = socket.socket()
        with contextlib.suppress(OSError):
            sock.bind(("127.0.0.1", port))
            sock.listen()
        held.append(sock)
    try:
        res = run([str(GATEHOUSE), "start"], env=base_env(), timeout=30, cwd=tmp_path)
    finally:
        for sock in held:
            sock.close()
    assert res.rc != 0 and res.out == "", res
    assert len(res.err_lines) == 1 and "in use" in res.err, res
    assert "-c" in res.err, res  # how to run it on other ports
    assert list(tmp_path.iterdir()) == []


# --- errors that say what to do -------------------------------------------------------------


def test_gatectl_with_the_daemon_down_says_to_start_it(fresh_cluster: Cluster) -> None:
    fresh_cluster.stop()
    res = fresh_cluster.gatectl("users", "ls")
    assert res.rc != 0 and res.out == "", res
    assert len(res.err_lines) == 1, res
    assert f"cannot reach 127.0.0.1:{fresh_cluster.auth_port}" in res.err, res
    assert f"is `gatehouse start -c {fresh_cluster.config}` running?" in res.err, res


def test_gatectl_without_a_config_says_where_it_looked(tmp_path: Path) -> None:
    res = run([str(GATECTL), "users", "ls"], cwd=tmp_path)
    assert res.rc != 0 and res.out == "", res
    assert len(res.err_lines) == 1, res
    assert f"{tmp_path / 'gatehouse-data' / 'admin'}" in res.err, res
    assert "current directory" in res.err and "-c" in res.err, res
    assert list(tmp_path.iterdir()) == []


def test_a_locked_user_is_told_how_an_admin_unlocks(cluster: Cluster, client: Client,
                                                    username: str) -> None:
    password = cluster.add_user(username)
    for _ in range(5):
        assert client.login(username, "wrong-password-123").rc != 0
    res = client.login(username, password)
    assert res.rc != 0 and len(res.err_lines) == 1, res
    assert "locked" in res.err and f"gatectl users set-password {username}" in res.err, res


def _without_a_terminal(argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run with no controlling terminal (a new session) and nothing on stdin."""
    return subprocess.run(argv, env=env, stdin=subprocess.DEVNULL, capture_output=True,
                          text=True, timeout=30, start_new_session=True)


def test_no_terminal_for_a_password_says_to_use_password_stdin(cluster: Cluster,
                                                               client: Client) -> None:
    commands = [
        [str(GSH), "login", f"--proxy={cluster.proxy}", "--user=alice", "--insecure"],
        [str(GATECTL), "-c", str(cluster.config), "users", "set-password", "alice"],
    ]
    for argv in commands:
        done = _without_a_terminal(argv, client.env())
        assert done.returncode != 0 and done.stdout == "", done
        assert done.stderr.strip() == ("error: no terminal to ask for the password on: give it "
                                       "on stdin with --password-stdin"), done


# --- normal operations log no errors ---------------------------------------------------------


def test_a_node_stopping_logs_one_info_line_at_the_auth(fresh_cluster: Cluster) -> None:
    daemon = fresh_cluster.daemon
    assert daemon is not None
    node = fresh_cluster.join_node("node2", {"env": "dev"})
    node.stop()
    # The auth notices when it next writes to the node's trust watch (a keepalive, 15 s).
    wait_for("the auth to notice the node's trust watch ended",
             lambda: "trust watch ended" in daemon.log_text(), timeout=40, interval=1)
    log = daemon.log_text()
    for bad in ("Traceback", " ERROR ", "never retrieved"):
        assert bad not in log, log[-4000:]
