"""The README's single-cluster flow, end to end, with the §7 contract's details."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

import pytest

from gatehouse.process.harness import Client, Cluster


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """node1 (env=dev) in the main process, node2 (env=prod) joined with a token.

    node2 joins through gatehouse.auth_server; test_join covers the proxy_server way.
    """
    with Cluster(tmp_path_factory.mktemp("cluster")).running(wait=False) as c:
        c.join_node("node2", {"env": "prod"}, via="auth")
        yield c


def test_set_password_needs_12_characters(cluster: Cluster, username: str) -> None:
    cluster.gatectl("users", "add", username, "--roles=access", "--logins=root").ok()
    short = cluster.gatectl("users", "set-password", username, "--password-stdin",
                            input="elevenchars\n")
    assert short.rc != 0
    assert len(short.err_lines) == 1 and "12" in short.err, short
    cluster.gatectl("users", "set-password", username, "--password-stdin",
                    input="twelve-chars\n").ok()
    users = cluster.gatectl("users", "ls", "--format=json").ok().json()
    assert username in [u["metadata"]["name"] for u in users]


def test_login_and_status(cluster: Cluster, client: Client, username: str) -> None:
    cluster.add_user(username, roles="access", logins="root,nobody")
    res = client.login(username).ok()
    assert username in res.out and cluster.name in res.out
    status = client.gsh("status").ok()
    assert username in status.out and cluster.name in status.out
    info = client.gsh("status", "--format=json").ok().json()
    assert info["user"] == username
    assert info["cluster"] == cluster.name
    assert info["roles"] == ["access"]
    assert sorted(info["logins"]) == ["nobody", "root"]
    assert info["expires"]


def test_ls_table_lists_both_nodes(cluster: Cluster, alice: Client) -> None:
    out = alice.gsh("ls").ok().out
    rows = {line.split()[0]: line for line in out.splitlines()[1:] if line.strip()}
    assert set(rows) == {"node1", "node2"}, out
    assert "env=dev" in rows["node1"] and "env=prod" in rows["node2"]
    assert f"127.0.0.1:{cluster.ssh_port}" in rows["node1"]


def test_ls_json_is_a_list_of_node_resources(cluster: Cluster, alice: Client) -> None:
    nodes = alice.gsh("ls", "--format=json").ok().json()
    assert isinstance(nodes, list)
    assert sorted(n["spec"]["hostname"] for n in nodes) == ["node1", "node2"]
    for node in nodes:
        assert node["kind"] == "node"
        assert set(node) >= {"kind", "version", "metadata", "spec"}
        assert node["spec"]["cluster"] == cluster.name
    by_name = {n["spec"]["hostname"]: n for n in nodes}
    assert by_name["node2"]["metadata"]["labels"] == {"env": "prod"}


def test_ls_label_filter_and_limit(alice: Client) -> None:
    prod = alice.gsh("ls", "env=prod", "--format=json").ok().json()
    assert [n["spec"]["hostname"] for n in prod] == ["node2"]
    dev = alice.gsh("ls", "env=dev").ok().out
    assert "node1" in dev and "node2" not in dev
    assert alice.gsh("ls", "env=nosuch", "--format=json").ok().json() == []
    one = alice.gsh("ls", "--limit=1", "--format=json").ok().json()
    assert len(one) == 1


def test_ls_limit_takes_the_first_nodes_in_hostname_order(alice: Client) -> None:
    def hostnames(*args: str) -> list[str]:
        return [n["spec"]["hostname"] for n in alice.gsh("ls", "--format=json", *args).ok().json()]

    assert hostnames() == ["node1", "node2"]
    assert hostnames("--limit=1") == ["node1"]
    assert hostnames("--limit=2") == hostnames("--limit=3") == ["node1", "node2"]
    assert hostnames("env=prod", "--limit=1") == ["node2"]
    table = alice.gsh("ls", "--limit=1").ok().out
    assert [line.split()[0] for line in table.splitlines()[1:] if line.strip()] == ["node1"]


def test_ssh_command_output_is_exact(alice: Client) -> None:
    res = alice.ssh("root@node1", "echo hi")
    assert (res.rc, res.out) == (0, "hi\n"), res
    assert res.err == ""


def test_ssh_exit_status_is_the_remote_one(alice: Client) -> None:
    assert alice.ssh("root@node1", "exit 7").rc == 7
    assert alice.ssh("root@node1", "true").rc == 0
    assert alice.ssh("root@node1", "false").rc == 1


def test_ssh_arguments_starting_with_dash_are_passed(alice: Client) -> None:
    res = alice.ssh("root@node1", "echo", "-n", "x")
    assert (res.rc, res.out) == (0, "x"), res
    res = alice.ssh("root@node1", "ls", "-d", "/")
    assert (res.rc, res.out) == (0, "/\n"), res


def test_ssh_pipes_stdin(alice: Client) -> None:
    res = alice.ssh("root@node1", "cat", input="data\n")
    assert (res.rc, res.out) == (0, "data\n"), res
    blob = bytes(range(256)) * 4096  # 1 MiB, every byte value
    res = alice.gsh("ssh", "root@node1", "sha256sum", input=blob)
    assert res.rc == 0 and res.out.split()[0] == hashlib.sha256(blob).hexdigest(), res


def test_ssh_without_command_reads_a_script_from_stdin(alice: Client) -> None:
    res = alice.ssh("root@node1", input="echo from-shell\nexit 3\n")
    assert (res.rc, res.out) == (3, "from-shell\n"), res


def test_ssh_stdout_carries_only_remote_stdout(alice: Client) -> None:
    res = alice.ssh("root@node1", "echo out; echo err >&2")
    assert res.rc == 0
    assert res.out == "out\n"
    assert res.err == "err\n"


def test_ssh_runs_without_pty_unless_asked(alice: Client) -> None:
    res = alice.ssh("root@node1", "tty")
    assert res.out.strip() == "not a tty", res
    forced = alice.gsh("ssh", "-t", "root@node1", "tty")
    assert forced.rc == 0 and forced.out.strip().startswith("/dev/pts/"), forced


def test_ssh_to_joined_node(cluster: Cluster, alice: Client) -> None:
    res = alice.ssh("root@node2", "echo $SSH_CONNECTION")
    assert res.rc == 0, res
    assert res.out.split()[-1] == str(cluster.node_named("node2")["spec"]["addr"]).split(":")[1]


@pytest.fixture
def logged_out(cluster: Cluster, client: Client, username: str) -> Client:
    """A profile that was logged in, then logged out."""
    cluster.add_user(username)
    client.login(username).ok()
    assert client.gsh("ls").rc == 0
    res = client.gsh("logout").ok()
    assert "logged out" in res.out
    return client


def test_logout_then_commands_fail_with_one_line(logged_out: Client) -> None:
    assert not (logged_out.home / "profile.json").exists()
    assert not (logged_out.home / "keys").exists()
    ls = logged_out.gsh("ls")
    assert ls.rc != 0 and ls.out == ""
    assert len(ls.err_lines) == 1 and "gsh login" in ls.err, ls
    status = logged_out.gsh("status")
    assert status.rc != 0 and len(status.err_lines) == 1, status
    again = logged_out.gsh("logout")
    assert again.rc == 0 and "not logged in" in again.out


def test_ssh_when_logged_out_exits_255(logged_out: Client) -> None:
    res = logged_out.ssh("root@node1", "true")
    assert res.rc == 255, res
    assert len(res.err_lines) == 1 and "gsh login" in res.err, res
