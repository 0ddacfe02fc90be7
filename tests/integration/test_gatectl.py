"""gatectl against a running auth: resources, their formats, errors, status."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import yaml

from gatehouse.process.harness import Client, Cluster

ROLE = """kind: role
version: v1
metadata: {name: team-payments}
spec:
  options: {max_session_ttl: 8h, port_forwarding: false}
  allow:
    logins: ["{{internal.logins}}", deploy]
    node_labels: {env: prod, team: "*"}
  deny:
    logins: [root]
"""


def _role_json(cluster: Cluster, name: str) -> list[dict[str, object]]:
    return list(cluster.gatectl("get", f"role/{name}", "--format=json").ok().json())


def test_create_get_json_and_yaml_round_trip(cluster: Cluster, tmp_path: Path) -> None:
    path = tmp_path / "role.yaml"
    path.write_text(ROLE)
    res = cluster.gatectl("create", str(path)).ok()
    assert "team-payments" in res.out

    items = _role_json(cluster, "team-payments")
    assert isinstance(items, list) and len(items) == 1
    role = items[0]
    assert set(role) == {"kind", "version", "metadata", "spec", "status"}
    assert (role["kind"], role["version"], role["metadata"]["name"]) == (  # type: ignore[index]
        "role", "v1", "team-payments")
    spec = role["spec"]
    assert spec["allow"]["logins"] == ["{{internal.logins}}", "deploy"]  # type: ignore[index]
    assert spec["allow"]["node_labels"] == {"env": "prod", "team": "*"}  # type: ignore[index]
    assert spec["deny"]["logins"] == ["root"]  # type: ignore[index]
    assert spec["options"]["max_session_ttl"] == "8h"  # type: ignore[index]

    dumped = cluster.gatectl("get", "role/team-payments", "--format=yaml").ok().out
    assert yaml.safe_load(dumped)["spec"] == spec
    again = tmp_path / "again.yaml"
    again.write_text(dumped)
    cluster.gatectl("create", "-f", str(again)).ok()
    assert _role_json(cluster, "team-payments") == items

    text = cluster.gatectl("get", "role/team-payments").ok().out
    assert "team-payments" in text


def test_create_existing_needs_force(cluster: Cluster) -> None:
    name = "dup-role"
    doc = ROLE.replace("team-payments", name)
    cluster.create(doc).ok()
    res = cluster.create(doc)
    assert res.rc != 0 and len(res.err_lines) == 1 and "exists" in res.err, res
    cluster.create(doc.replace("deploy", "deployer"), force=True).ok()
    assert "deployer" in _role_json(cluster, name)[0]["spec"]["allow"]["logins"]  # type: ignore[index]


def test_create_several_resources_from_stdin(cluster: Cluster) -> None:
    docs = ROLE.replace("team-payments", "multi-a") + "---\n" + ROLE.replace("team-payments",
                                                                             "multi-b")
    res = cluster.gatectl("create", "/dev/stdin", input=docs).ok()
    assert "multi-a" in res.out and "multi-b" in res.out
    names = [r["metadata"]["name"] for r in cluster.gatectl("get", "role", "--format=json")
             .ok().json()]
    assert {"multi-a", "multi-b", "access", "editor", "auditor"} <= set(names)


def _bad_input_leaves_role_alone(cluster: Cluster, name: str, bad: str,
                                 check: Callable[[str], bool]) -> None:
    cluster.create(ROLE.replace("team-payments", name)).ok()
    before = _role_json(cluster, name)
    res = cluster.create(bad, force=True)
    assert res.rc != 0 and res.out == "", res
    assert len(res.err_lines) == 1 and check(res.err_lines[0]), res
    assert _role_json(cluster, name) == before


def test_unknown_field_is_named_and_nothing_changes(cluster: Cluster) -> None:
    bad = ROLE.replace("team-payments", "typo-role").replace("  allow:", "  alow:")
    _bad_input_leaves_role_alone(cluster, "typo-role", bad,
                                 lambda line: "unknown field spec.alow" in line)


def test_bad_value_is_named_and_nothing_changes(cluster: Cluster) -> None:
    bad = ROLE.replace("team-payments", "ttl-role").replace("8h", "eight hours")
    _bad_input_leaves_role_alone(cluster, "ttl-role", bad,
                                 lambda line: "max_session_ttl" in line)


def test_malformed_yaml_and_nothing_changes(cluster: Cluster) -> None:
    bad = "kind: role\nmetadata: {name: yaml-role\n  spec: [\n"
    _bad_input_leaves_role_alone(cluster, "yaml-role", bad,
                                 lambda line: "YAML" in line and "line" in line)


def test_half_bad_file_creates_nothing(cluster: Cluster) -> None:
    """A file whose second resource is invalid must not create the first."""
    good = ROLE.replace("team-payments", "half-good")
    bad = ROLE.replace("team-payments", "half-bad").replace("  deny:", "  deni:")
    res = cluster.create(good + "---\n" + bad)
    assert res.rc != 0 and "resource 2" in res.err and "deni" in res.err, res
    missing = cluster.gatectl("get", "role/half-good")
    assert missing.rc != 0 and "not found" in missing.err, missing


def test_get_unknown_kind_and_missing_resource(cluster: Cluster) -> None:
    res = cluster.gatectl("get", "gizmo")
    assert res.rc != 0 and len(res.err_lines) == 1 and "gizmo" in res.err, res
    res = cluster.gatectl("get", "role/nosuch")
    assert res.rc != 0 and len(res.err_lines) == 1 and "nosuch" in res.err, res
    res = cluster.gatectl("rm", "role/nosuch")
    assert res.rc != 0 and len(res.err_lines) == 1 and "nosuch" in res.err, res


def test_users_ls_and_rm_user(cluster: Cluster, client: Client, username: str) -> None:
    cluster.add_user(username, roles="access", logins="root")
    users = cluster.gatectl("users", "ls", "--format=json").ok().json()
    mine = [u for u in users if u["metadata"]["name"] == username]
    assert mine and mine[0]["spec"]["roles"] == ["access"]
    assert mine[0]["spec"]["traits"]["logins"] == ["root"]
    assert all("password" not in json.dumps(u).lower() for u in users)
    client.login(username).ok()

    res = cluster.gatectl("rm", f"user/{username}").ok()
    assert username in res.out
    res = client.login(username)
    assert res.rc != 0 and len(res.err_lines) == 1, res
    assert "invalid user name or password" in res.err
    missing = cluster.gatectl("get", f"user/{username}")
    assert missing.rc != 0 and "not found" in missing.err


def _ssh_fingerprint(public_line: str) -> str:
    blob = base64.b64decode(public_line.split()[1])
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


def test_status_prints_cluster_and_ca_fingerprints(cluster: Cluster) -> None:
    res = cluster.gatectl("status").ok()
    assert cluster.name in res.out
    cas = cluster.gatectl("get", "ca", "--format=json").ok().json()
    assert sorted(ca["spec"]["type"] for ca in cas) == ["host", "user"]
    for ca in cas:
        assert ca["spec"]["cluster_name"] == cluster.name
        assert _ssh_fingerprint(ca["spec"]["ssh_public_keys"][0]) in res.out, (ca, res)
    info = cluster.gatectl("status", "--format=json").ok().json()
    assert info["cluster"] == cluster.name
    assert {s["service"]: s["ok"] for s in info["services"]} == {
        "auth": True, "proxy": True, "ssh": True}


def test_status_fails_clearly_when_the_daemon_is_down(fresh_cluster: Cluster) -> None:
    assert fresh_cluster.daemon is not None
    assert fresh_cluster.daemon.stop() == 0
    assert "stopped" in fresh_cluster.daemon.log_text()
    res = fresh_cluster.gatectl("status")
    assert res.rc != 0 and res.out == "", res
    assert len(res.err_lines) == 1 and res.err_lines[0].startswith("error: "), res
    assert str(fresh_cluster.auth_port) in res.err, res
    assert "Traceback" not in res.err
