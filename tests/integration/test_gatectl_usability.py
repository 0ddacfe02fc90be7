"""gatectl as a new admin meets it (issue 17): help without a daemon, tables that keep
ids whole, one clear line for each mistake, and a leaf that says when its tunnel to the
root is down, why, and how a re-join after the root removed it works.

Real `gatehouse start` processes on loopback; gatectl and gsh run as a user runs them,
piped (as here) or on a terminal (a pseudo-terminal of 80 columns).
"""

from __future__ import annotations

import os
import re
import select
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from gatehouse.process.harness import (
    GATECTL,
    Client,
    Cluster,
    base_env,
    connection,
    join,
    run,
    trusted_cluster_yaml,
    wait_for,
    wait_online,
)

ROOT, LEAF = "sso.example.com", "us-east-1a"
MAP = "{remote: access, local: [access]}"
NAME_RULE = ("use letters, digits and . _ @ -, starting with a letter or digit, at most 253 "
             "characters")


def _plain(text: str) -> bool:
    """No colours, no boxes: what a pipe, a log file or NO_COLOR wants."""
    return "\x1b" not in text and not any(c in text for c in "╭╰│─")


def _on_terminal(argv: list[str], columns: int = 80, **env: str) -> str:
    """What ``argv`` writes to a terminal of ``columns`` columns (a pseudo-terminal)."""
    main, sub = os.openpty()
    try:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=sub, stderr=sub,
                                env=base_env(COLUMNS=str(columns), LINES="50", **env))
    finally:
        os.close(sub)
    out = b""
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([main], [], [], 1.0)
            if not ready:
                continue
            try:
                chunk = os.read(main, 65536)
            except OSError:  # EIO: the child closed its end
                break
            if not chunk:
                break
            out += chunk
        assert proc.wait(timeout=10) == 0, out
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(main)
    return out.decode().replace("\r\n", "\n")


# --- help and usage (items 8 and 22) ---------------------------------------------------


@pytest.mark.parametrize("argv", [["--help"], ["users", "add", "--help"],
                                  ["status", "--help"], ["events", "--help"],
                                  ["users", "update", "--help"]])
def test_help_needs_no_daemon_and_is_plain(argv: list[str], tmp_path: Path) -> None:
    # No config, no data_dir here: nothing to reach, and help does not try.
    res = run([str(GATECTL), *argv], cwd=tmp_path).ok()
    assert res.out.startswith("Usage: gatectl"), res
    assert _plain(res.out) and "<bool>" not in res.out and "--no-debug" not in res.out, res
    assert not (tmp_path / "gatehouse-data").exists()


def test_a_usage_error_is_plain_when_piped(tmp_path: Path) -> None:
    res = run([str(GATECTL), "users", "add"], cwd=tmp_path)
    assert res.rc == 2 and _plain(res.err), res
    assert res.err_lines[-1] == "Error: Missing argument 'NAME'.", res


def test_a_command_without_a_daemon_fails_in_one_line(tmp_path: Path) -> None:
    res = run([str(GATECTL), "status"], cwd=tmp_path)
    assert res.rc == 1 and len(res.err_lines) == 1 and res.err.startswith("error: "), res


# --- tables (items 9 and 22) ----------------------------------------------------------


def test_piped_tables_print_full_rows_with_ids_whole(cluster: Cluster) -> None:
    [node] = cluster.node_list()
    host_id = node["metadata"]["name"]
    lines = cluster.gatectl("get", "node").ok().out.splitlines()
    assert len(lines) == 2 and lines[0].split() == ["Name", "Spec", "Status"], lines
    assert lines[1].split()[0] == host_id, lines
    assert "hostname: node1, addr: 127.0.0.1:" in lines[1]
    copied = lines[1].split()[0]  # what an admin copies for `gatectl rm node/ID`
    cluster.gatectl("get", f"node/{copied}").ok()


def test_in_80_columns_ids_are_whole_and_no_color_means_none(cluster: Cluster) -> None:
    host_id = wait_for("node1", lambda: cluster.node_named("node1"))["metadata"]["name"]
    argv = [str(GATECTL), "-c", str(cluster.config), "get", "node"]
    shown = _on_terminal(argv)
    assert host_id in shown and "…" not in shown, shown
    assert "\x1b[1m" in shown  # bold headers on a terminal
    assert all(len(line) <= 80 for line in shown.splitlines()), shown
    assert _plain(_on_terminal(argv, NO_COLOR="1"))


def test_nested_values_read_as_yaml_not_python(cluster: Cluster, username: str) -> None:
    cluster.add_user(username, roles="access,auditor", logins="root,deploy")
    text = cluster.gatectl("users", "ls").ok().out
    mine = next(line for line in text.splitlines() if line.split()[0] == username)
    assert "roles: [access, auditor], traits: {logins: [root, deploy]}" in mine, mine
    role = cluster.gatectl("get", "role/access").ok().out
    assert "allow: {logins: [{{internal.logins}}], node_labels: {*: *}" in role, role
    assert "'" not in role and "True" not in role and "deny" not in role, role


def test_tokens_ls_shows_when_each_expires(cluster: Cluster) -> None:
    token = cluster.token("node")
    [mine] = [t for t in cluster.gatectl("tokens", "ls", "--format=json").ok().json()
              if token.startswith(t["metadata"]["name"])]
    lines = cluster.gatectl("tokens", "ls").ok().out.splitlines()
    assert lines[0].split() == ["Name", "Spec", "Expires", "Status"], lines
    row = next(line for line in lines if mine["metadata"]["name"] in line)
    assert mine["metadata"]["expires"][:19] + "Z" in row, (row, mine)


def test_status_counts_in_plain_english(cluster: Cluster) -> None:
    out = cluster.gatectl("status").ok().out
    assert re.search(r"\b1 node\b", out) and "1 nodes" not in out, out


# --- formats (item 10) -------------------------------------------------------------------


@pytest.mark.parametrize("argv", [["events"], ["status"]])
def test_yaml_is_refused_where_it_is_not_offered(cluster: Cluster, argv: list[str]) -> None:
    res = cluster.gatectl(*argv, "--format=yaml")
    assert res.rc == 2 and res.out == "", res
    assert res.err_lines[-1].endswith("'yaml' is not one of 'text', 'json'."), res


@pytest.mark.parametrize("argv", [["ls"], ["clusters"], ["status"], ["recordings", "ls"]])
def test_gsh_listings_refuse_yaml_alike(alice: Client, argv: list[str]) -> None:
    res = alice.gsh(*argv, "--format=yaml")
    assert res.rc == 2 and res.out == "", res
    assert "'yaml' is not one of 'text'," in res.err, res


@pytest.mark.parametrize("argv", [["get", "role/access"], ["users", "ls"], ["tokens", "ls"]])
def test_resources_are_shown_as_yaml(cluster: Cluster, argv: list[str]) -> None:
    res = cluster.gatectl(*argv, "--format=yaml").ok()
    assert res.out == "" or res.out.startswith("kind: "), res


# --- users (item 13) ---------------------------------------------------------------------


def test_a_user_with_an_unknown_role_is_refused(cluster: Cluster, username: str) -> None:
    res = cluster.gatectl("users", "add", username, "--roles=acess")
    assert res.rc == 1 and res.out == "", res
    assert res.err_lines == ["error: unknown role 'acess': the roles are access, auditor, "
                             "editor"], res
    assert cluster.gatectl("get", f"user/{username}").rc == 1


def test_an_invalid_user_name_says_what_is_allowed(cluster: Cluster) -> None:
    res = cluster.gatectl("users", "add", "b@d user", "--roles=access")
    assert res.rc == 1 and res.err_lines == [f"error: invalid user name 'b@d user': {NAME_RULE}"]


def test_users_update_replaces_roles_or_logins_and_login_follows(
    cluster: Cluster, client: Client, username: str,
) -> None:
    cluster.add_user(username, roles="access", logins="root")
    res = cluster.gatectl("users", "update", username, "--roles=access,auditor").ok()
    assert res.out == f"user {username} updated: roles [access, auditor], logins [root]\n"
    cluster.gatectl("users", "update", username, "--logins=nobody").ok()
    [user] = cluster.gatectl("get", f"user/{username}", "--format=json").ok().json()
    assert user["spec"] == {"roles": ["access", "auditor"], "traits": {"logins": ["nobody"]}}
    client.login(username).ok()  # the password set by add_user is kept
    assert client.gsh("status", "--format=json").ok().json()["logins"] == ["nobody"]

    for argv, line in [
        ([username, "--roles=acess"], "error: unknown role 'acess': the roles are access, "
                                      "auditor, editor"),
        ([username], "error: give --roles and/or --logins to change"),
        (["nobody-such", "--roles=access"], "error: user nobody-such not found"),
    ]:
        res = cluster.gatectl("users", "update", *argv)
        assert res.rc == 1 and res.err_lines == [line], res
    [after] = cluster.gatectl("get", f"user/{username}", "--format=json").ok().json()
    assert after["spec"] == user["spec"]


# --- events (item 18) --------------------------------------------------------------------


def test_events_since_days_known_types_and_the_commands_run(cluster: Cluster,
                                                            alice: Client) -> None:
    marker = f"usability-{uuid.uuid4().hex[:8]}"
    alice.ssh("root@node1", f"echo {marker}").ok()
    cluster.wait_event("the exec", lambda e: e["event"] == "exec"
                       and marker in e["fields"].get("command", ""))
    text = cluster.gatectl("events", "--since=2d", "--type=exec").ok().out
    row = next(line for line in text.splitlines() if marker in line)
    assert row.split()[1:3] == ["exec", "T3002I"] and row.endswith(f"echo {marker}"), row

    res = cluster.gatectl("events", "--type=exec,sesion.start")
    assert res.rc == 1 and len(res.err_lines) == 1, res
    assert res.err_lines[0].startswith("error: unknown event type 'sesion.start': the types "
                                       "are access.denied,"), res
    assert "session.start" in res.err

    res = cluster.gatectl("events", "--since=99999999d")
    assert res.rc == 1 and len(res.err_lines) == 1, res
    assert res.err_lines[0] == ("error: since: '99999999d' is further back than 0001-01-01, "
                                "the earliest date there is"), res


# --- a leaf and its root (items 5, 6 and 22) -------------------------------------------


class Pair:
    def __init__(self, base: Path) -> None:
        self.root = Cluster(base / "root", name=ROOT)
        self.leaf = Cluster(base / "leaf", name=LEAF, nodename="leafnode")
        self.spare = Cluster(base / "spare", name="us-east-1c", nodename="sparenode")


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    p = Pair(tmp_path_factory.mktemp("pair"))
    try:
        for c in (p.root, p.leaf, p.spare):
            c.start()
        yield p
    finally:
        for c in (p.root, p.leaf, p.spare):
            c.stop(wait=False)


def _unused_tokens(cluster: Cluster) -> set[str]:
    return {t["metadata"]["name"]
            for t in cluster.gatectl("tokens", "ls", "--format=json").ok().json()}


def _tunnel_line(leaf: Cluster) -> tuple[int, str]:
    res = leaf.gatectl("status")
    line = next(x for x in res.out.splitlines() if x.startswith("Root:"))
    return res.rc, line


def test_proxy_addr_at_the_roots_auth_is_refused_and_sends_no_token(pair: Pair) -> None:
    token = pair.root.token("trusted_cluster")
    auth = f"127.0.0.1:{pair.root.auth_port}"
    res = pair.spare.create(trusted_cluster_yaml(pair.root, token, MAP, proxy_addr=auth))
    assert res.rc == 1 and res.out == "", res
    assert res.err_lines == [
        f"error: proxy_addr {auth} is the auth service of {ROOT}, not the proxy of {ROOT}: "
        "set proxy_addr to the root's proxy address (its proxy_service.public_addr, else its "
        "listen_addr); the token was not sent"], res
    assert token[:22] in _unused_tokens(pair.root)
    assert pair.spare.gatectl("get", "trusted_cluster", "--format=json").ok().json() == []
    assert connection(pair.root, "us-east-1c") == "absent"


def test_a_joined_leaf_shows_its_tunnel_and_never_the_token(pair: Pair) -> None:
    resource = join(pair.leaf, pair.root, MAP)
    token = re.search(r"token: (\S+)", resource)
    assert token
    assert wait_for("the leaf's status to show the tunnel up",
                    lambda: _tunnel_line(pair.leaf) == (0, f"Root:     {ROOT} tunnel up"))
    for fmt in ("text", "yaml", "json"):
        shown = pair.leaf.gatectl("get", "trusted_cluster", f"--format={fmt}").ok().out
        assert ROOT in shown and token[1] not in shown and token[1][:22] not in shown, shown
    [tc] = pair.leaf.gatectl("get", "trusted_cluster", "--format=json").ok().json()
    assert tc["status"] == {"connection": "online", "detail": ""}
    # The file it joined with, again: an update (no join, the token is not spent twice).
    res = pair.leaf.create(resource, force=True).ok()
    assert res.out == f"trusted_cluster {ROOT} updated\n"


def test_after_the_root_removes_the_leaf_a_new_token_joins_again(pair: Pair) -> None:
    if connection(pair.root, LEAF) == "absent":
        join(pair.leaf, pair.root, MAP)
    shown = pair.leaf.gatectl("get", f"trusted_cluster/{ROOT}", "--format=yaml").ok().out
    pair.root.gatectl("rm", f"rc/{LEAF}").ok()

    # The leaf says its tunnel is down, why, and what to run; its status fails.
    def down() -> str | None:
        rc, line = _tunnel_line(pair.leaf)
        return line if rc == 1 and "did the root remove this leaf?" in line else None
    line = wait_for("the leaf's status to show the root refusing its tunnel", down)
    assert line.startswith(f"Root:     {ROOT} tunnel DOWN: "), line
    assert "run `gatectl create -f` here with a new token from the root" in line

    # The same resource again cannot help: said in one line, nothing changed.
    res = pair.leaf.create(shown, force=True)
    assert res.rc == 1 and res.out == "", res
    assert res.err_lines == [
        f"error: the root {ROOT} no longer takes this cluster's tunnel (did it remove this "
        "leaf?): to join again, run `gatectl create -f` with a new token from the root "
        "(`gatectl tokens add --type=trusted_cluster` there); nothing was changed"], res

    # Without -f: it exists, and the line says how to join again.
    token = pair.root.token("trusted_cluster")
    fresh = shown.replace("spec:\n", f"spec:\n  token: {token}\n", 1)
    res = pair.leaf.create(fresh)
    assert res.rc == 1 and "or with a new token to join again" in res.err, res

    res = pair.leaf.create(fresh, force=True).ok()
    assert res.out == f"trusted_cluster {ROOT} joined the root at {pair.root.proxy}\n"
    wait_online(pair.root, LEAF)
    assert wait_for("the leaf's status to show the tunnel up again",
                    lambda: _tunnel_line(pair.leaf) == (0, f"Root:     {ROOT} tunnel up"))
    assert token[:22] not in _unused_tokens(pair.root)
