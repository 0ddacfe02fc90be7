"""Resource files: multi-document YAML, aliases, one-line errors, round trips."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gatehouse.errors import BadParameter
from gatehouse.types import (
    KIND_ALIASES,
    KINDS,
    CertAuthority,
    Node,
    RemoteCluster,
    Resource,
    Role,
    RoleConditions,
    RoleOptions,
    RoleSpec,
    Token,
    TrustedCluster,
    User,
    canonical_kind,
    dump_yaml,
    from_json_obj,
    parse_resources,
    preset_roles,
    to_json_obj,
)
from tests.types.samples import PEM, ssh_key_line

BOUNDED = settings(max_examples=100, deadline=None)

ROLE_YAML = """\
kind: role
version: v1
metadata: {name: team-payments}
spec:
  options: {max_session_ttl: 8h, port_forwarding: false}
  allow:
    logins: ["{{internal.logins}}", deploy]
    node_labels: {env: prod, team: "*"}    # {"*": "*"} = every node
  deny:
    logins: [root]
"""


def sample_resources() -> list[Resource]:
    expires = dt.datetime(2026, 1, 1, 12, 30, tzinfo=dt.UTC)
    return [
        *preset_roles(),
        User(metadata={"name": "alice"}, spec={"roles": ["access"], "traits": {"logins": ["a"]}}),
        Token(metadata={"name": "_secret-token-0123456789", "expires": expires},
              spec={"type": "node"}),
        Node(
            metadata={"name": "h1", "labels": {"env": "prod"}},
            spec={"hostname": "web1", "addr": "[::1]:3022", "cluster": "c", "host_id": "h1"},
            status={"last_heartbeat": expires},
        ),
        CertAuthority(
            metadata={"name": "c"},
            spec={"cluster_name": "c", "type": "user", "ssh_public_keys": [ssh_key_line()],
                  "tls_certs": [PEM]},
        ),
        TrustedCluster(
            metadata={"name": "root"},
            spec={"enabled": False, "token": "t", "proxy_addr": "root:3080",
                  "role_map": [{"remote": "^dev-(.*)$", "local": ["team-$1"]}]},
        ),
        RemoteCluster(metadata={"name": "leaf"},
                      status={"connection": "online", "last_heartbeat": expires}),
    ]


def error_of(text: str) -> str:
    with pytest.raises(BadParameter) as info:
        parse_resources(text)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_parses_the_architecture_example() -> None:
    (role,) = parse_resources(ROLE_YAML)
    assert isinstance(role, Role)
    assert role.name == "team-payments"
    assert role.spec.options.max_session_ttl == dt.timedelta(hours=8)
    assert role.spec.allow.node_labels == {"env": "prod", "team": "*"}
    assert role.spec.deny.logins == ["root"]


def test_multiple_documents_and_empty_ones() -> None:
    text = "---\n" + ROLE_YAML + "---\n---\nkind: rc\nmetadata: {name: leaf}\n---\n"
    resources = parse_resources(text)
    assert [r.kind for r in resources] == ["role", "remote_cluster"]
    assert parse_resources("") == []


@pytest.mark.parametrize(
    ("alias", "cls"),
    [("rc", RemoteCluster), ("ca", CertAuthority), ("roles", Role), ("Role", Role)],
)
def test_kind_aliases_in_files(alias: str, cls: type[Resource]) -> None:
    spec = {"cluster_name": "c", "type": "host", "ssh_public_keys": [ssh_key_line()]}
    obj: dict[str, object] = {"kind": alias, "metadata": {"name": "x"}}
    if cls is CertAuthority:
        obj["spec"] = spec
    (resource,) = parse_resources(json.dumps(obj))
    assert type(resource) is cls and resource.kind == cls.model_fields["kind"].default


def test_canonical_kind() -> None:
    assert KIND_ALIASES["rc"] == "remote_cluster" and KIND_ALIASES["ca"] == "cert_authority"
    assert canonical_kind("rc") == "remote_cluster"
    assert canonical_kind("trusted-cluster") == "trusted_cluster"
    assert canonical_kind("users") == "user"
    assert canonical_kind("cert_authorities") == "cert_authority"
    assert all(canonical_kind(kind) == kind for kind in KINDS)
    with pytest.raises(BadParameter, match="unknown kind 'widget': expected one of cert_author"):
        canonical_kind("widget")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "kind: role\nmetadata: {name: r}\nspec: {allow: {logins: root}}",
            "resource 1 (role): spec.allow.logins: expected a list, got 'root'",
        ),
        (
            "kind: role\nmetadata: {name: r}\nspec: {alow: {}}",
            "resource 1 (role): unknown field spec.alow",
        ),
        (
            ROLE_YAML + "---\nkind: user\nmetadata: {name: bob}\nspec: {}\n",
            "resource 2 (user): missing field spec.roles",
        ),
        (
            "kind: role\nmetadata: {name: r}\nspec: {allow: {rules: [{resources: [user], "
            "verbs: [get]}]}}",
            "resource 1 (role): spec.allow.rules[0].verbs[0]: unknown verb 'get'",
        ),
        (
            "kind: role\nmetadata: {name: r}\nspec: {options: {max_session_ttl: 8 hours}}",
            "resource 1 (role): spec.options.max_session_ttl: invalid duration '8 hours'",
        ),
        (
            "kind: user\nmetadata: {name: -bob}\nspec: {roles: [a]}",
            "resource 1 (user): metadata.name: '-bob' is not a valid name",
        ),
        ("kind: widget\nmetadata: {name: x}", "resource 1: unknown kind 'widget'"),
        ("metadata: {name: x}", "resource 1: missing field kind"),
        ("kind: [role]", "resource 1: kind must be a string"),
        ("- kind: role", "resource 1: expected a mapping with kind, version, metadata and spec"),
        ("kind: role\nversion: v2\nmetadata: {name: r}",
         "resource 1 (role): version: expected 'v1', got 'v2'"),
        ("kind: role\nmetadata: {name: r}\nstatus: {}",
         "resource 1 (role): status: expected no value here, got a mapping"),
    ],
)
def test_errors_name_the_document_and_field(text: str, expected: str) -> None:
    assert error_of(text).startswith(expected)


def test_several_problems_are_listed_on_one_line() -> None:
    message = error_of("kind: user\nmetadata: {name: r}\nspec: {traits: 3}")
    assert message == ("resource 1 (user): missing field spec.roles; "
                       "spec.traits: expected a mapping, got 3")
    message = error_of("kind: role\nmetadata: {name: r}\nspec: {allow: [x], deny: 3}")
    assert message == ("resource 1 (role): spec.allow: expected a mapping, got a list; "
                       "spec.deny: expected a mapping, got 3")


def test_past_ten_problems_the_rest_are_counted() -> None:
    fields = ", ".join(f"x{i}: 1" for i in range(13))
    message = error_of(f"kind: role\nmetadata: {{name: r}}\nspec: {{{fields}}}")
    assert message.count("unknown field spec.x") == 10
    assert message.endswith("; and 3 more problems")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("kind: role\nmetadata: {name: r\n", "invalid YAML at line 3"),
        ("kind: role\n  spec: x\n", "invalid YAML at line 2"),
        ("kind: role\nkind: user\n", "invalid YAML at line 2, column 1: duplicate key 'kind'"),
        (ROLE_YAML + "---\nkind: role\n\tx: 1\n", "invalid YAML at line 13, column 1"),
    ],
)
def test_malformed_yaml_gives_a_line_number(text: str, expected: str) -> None:
    assert error_of(text).startswith(expected)


def test_round_trip_through_yaml() -> None:
    resources = sample_resources()
    text = dump_yaml(resources)
    assert parse_resources(text) == resources
    assert text.count("\n---\n") == len(resources) - 1
    assert "-----BEGIN CERTIFICATE-----\n" in text  # PEM kept readable as a block
    assert "status" not in text.split("---")[0]  # no "status: null" for roles


def test_json_shape() -> None:
    for resource in sample_resources():
        obj = to_json_obj(resource)
        assert list(obj) == ["kind", "version", "metadata", "spec", "status"]
        assert json.loads(json.dumps(obj)) == obj
        assert from_json_obj(obj) == resource
    remote = to_json_obj(sample_resources()[-1])
    assert remote["status"] == {"connection": "online", "last_heartbeat": "2026-01-01T12:30:00Z"}
    assert to_json_obj(preset_roles()[0])["status"] is None
    assert to_json_obj(preset_roles()[0])["spec"]["options"]["max_session_ttl"] == "12h"


def test_from_json_obj_prefix() -> None:
    with pytest.raises(BadParameter, match=r"^request body \(role\): unknown field spec.x$"):
        from_json_obj({"kind": "role", "metadata": {"name": "r"}, "spec": {"x": 1}},
                      where="request body")


_names = st.builds(
    str.__add__, st.sampled_from("abcxyz"), st.text(alphabet="ab01-._", max_size=8)
)
_labels = st.dictionaries(_names, _names, max_size=3)
_selector_values = st.one_of(
    _names, st.just("*"), st.lists(_names, min_size=1, max_size=3), st.just("^[a-z]+-[0-9]+$")
)


@st.composite
def roles(draw: st.DrawFn) -> Role:
    def conditions() -> RoleConditions:
        return RoleConditions(
            logins=draw(st.lists(st.one_of(_names, st.just("{{internal.logins}}")), max_size=3)),
            node_labels=draw(st.dictionaries(_names, _selector_values, max_size=3)),
        )

    return Role(
        metadata={"name": draw(_names), "labels": draw(_labels)},
        spec=RoleSpec(
            options=RoleOptions(
                max_session_ttl=dt.timedelta(seconds=draw(st.integers(1, 10**6))),
                port_forwarding=draw(st.booleans()),
            ),
            allow=conditions(),
            deny=conditions(),
        ),
    )


@BOUNDED
@given(st.lists(roles(), max_size=4))
def test_round_trip_property(generated: list[Role]) -> None:
    assert parse_resources(dump_yaml(generated)) == generated
