"""How gatectl shows resources and events (cli/views.py): YAML-ish, never Python reprs."""

from __future__ import annotations

from gatehouse.cli.common import format_table
from gatehouse.cli.views import event_message, flow, plural, resource_rows, summary
from gatehouse.types.trusted_cluster import TrustedCluster
from gatehouse.types.yaml_io import to_json_obj


def test_nested_values_are_yaml_flow_text() -> None:
    assert flow({"remote": "access", "local": ["access"]}) == "{remote: access, local: [access]}"
    assert flow([True, None, 3, ""]) == '[true, null, 3, ""]'
    assert summary({"roles": ["access"], "traits": {"logins": ["root"]}}) == \
        "roles: [access], traits: {logins: [root]}"


def test_empty_parts_are_left_out() -> None:
    assert summary({"allow": {"logins": ["a"], "rules": []}, "deny": {"logins": []},
                    "note": ""}) == "allow: {logins: [a]}"


def test_a_trusted_cluster_row_shows_its_role_map_and_never_its_token() -> None:
    tc = TrustedCluster.model_validate({
        "metadata": {"name": "sso.example.com"},
        "spec": {"token": "s3cret", "proxy_addr": "127.0.0.1:3080",
                 "role_map": [{"remote": "access", "local": ["access", "auditor"]}]}})
    headers, [row] = resource_rows([to_json_obj(tc)])
    assert headers == ["Name", "Spec", "Status"]
    assert row[1] == ("enabled: true, proxy_addr: 127.0.0.1:3080, "
                      "role_map: [{remote: access, local: [access, auditor]}]")
    assert "s3cret" not in " ".join(row) and "'" not in row[1]


def test_tokens_show_when_they_expire() -> None:
    token = {"kind": "token", "metadata": {"name": "abc", "expires": "2026-01-02T03:04:05.6Z"},
             "spec": {"type": "node"}, "status": None}
    headers, [row] = resource_rows([token])
    assert headers == ["Name", "Spec", "Expires", "Status"]
    assert row == ["abc", "type: node", "2026-01-02T03:04:05Z", ""]


def test_a_node_row_fits_80_columns_with_its_id_whole() -> None:
    host_id = "07a50626-9fe5-4588-a65f-549137cb4c82"
    node = {"kind": "node", "metadata": {"name": host_id, "expires": "2026-01-02T03:04:05Z"},
            "spec": {"hostname": "node1", "addr": "127.0.0.1:3022",
                     "cluster": "sso.example.com", "host_id": host_id},
            "status": {"last_heartbeat": "2026-01-02T03:03:35.123456+00:00"}}
    headers, [row] = resource_rows([node])
    assert headers == ["Name", "Spec", "Status"]  # a node's expiry is its heartbeat's
    assert row == [host_id, "hostname: node1, addr: 127.0.0.1:3022, cluster: sso.example.com",
                   "last_heartbeat: 2026-01-02T03:03:35Z"]
    text = format_table(headers, [row], width=80)
    assert max(map(len, text.splitlines())) <= 80 and host_id in text, text


def test_an_exec_event_shows_its_command() -> None:
    assert event_message({"event": "exec", "message": "", "fields": {"command": "ls -la"}}) \
        == "ls -la"
    assert event_message({"event": "session.start", "message": "",
                          "fields": {"command": None, "pty": True}}) == "interactive shell"
    assert event_message({"event": "access.denied", "message": "no role", "fields": {}}) \
        == "no role"
    assert event_message({"event": "resource.create", "message": "",
                          "fields": {"kind": "role", "name": "x"}}) == "kind: role, name: x"


def test_plural() -> None:
    assert [plural(n, "node") for n in (0, 1, 2)] == ["0 nodes", "1 node", "2 nodes"]
