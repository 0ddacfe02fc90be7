"""Resource models: validation with messages a person can act on, defaults, presets."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from gatehouse.errors import BadParameter
from gatehouse.types import (
    CertAuthority,
    ClusterName,
    Metadata,
    Node,
    RemoteCluster,
    Role,
    RoleConditions,
    RoleSpec,
    Rule,
    Template,
    Token,
    TrustedCluster,
    User,
    access_role,
    auditor_role,
    compile_pattern,
    dump_yaml,
    editor_role,
    format_duration,
    match_pattern,
    parse_duration,
    parse_resources,
    parse_template,
    preset_roles,
    split_host_port,
    time_after,
    time_before,
)
from tests.types.samples import PEM, ssh_key_line

BOUNDED = settings(max_examples=100, deadline=None)


# --- durations and addresses ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("8h", dt.timedelta(hours=8)),
        ("15m", dt.timedelta(minutes=15)),
        ("30s", dt.timedelta(seconds=30)),
        ("1h30m", dt.timedelta(hours=1, minutes=30)),
        ("1h0m5s", dt.timedelta(hours=1, seconds=5)),
        ("0s", dt.timedelta(0)),
        ("2d", dt.timedelta(days=2)),
        ("1d12h", dt.timedelta(hours=36)),
    ],
)
def test_parse_duration(text: str, expected: dt.timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize(
    "text", ["", "8", "h", "8x", "1m1h", "1h2d", "-5m", "1.5h", "8 h", "99999999999999h",
             "99999999999999d"]
)
def test_parse_duration_rejects_with_a_clear_error(text: str) -> None:
    with pytest.raises(BadParameter, match="invalid duration"):
        parse_duration(text)


def test_time_before_is_now_less_the_duration_or_says_it_is_too_far_back() -> None:
    now = dt.datetime(2026, 1, 2, tzinfo=dt.UTC)
    assert time_before(now, "1d12h", "since") == dt.datetime(2025, 12, 31, 12, tzinfo=dt.UTC)
    with pytest.raises(BadParameter, match=r"^since: '99999999d' is further back than "
                                           r"0001-01-01, the earliest date there is$"):
        time_before(now, "99999999d", "since")
    with pytest.raises(BadParameter, match=r"^invalid duration '2y'"):
        time_before(now, "2y", "since")
    assert time_after(now, "1d12h", "ttl") == dt.datetime(2026, 1, 3, 12, tzinfo=dt.UTC)
    with pytest.raises(BadParameter, match=r"^ttl: '99999999d' is further ahead than "
                                           r"9999-12-31, the last date there is$"):
        time_after(now, "99999999d", "ttl")


@pytest.mark.parametrize(
    ("delta", "text"),
    [
        (dt.timedelta(hours=12), "12h"),
        (dt.timedelta(minutes=90), "1h30m"),
        (dt.timedelta(seconds=45), "45s"),
        (dt.timedelta(0), "0s"),
        (dt.timedelta(minutes=-5), "-5m"),
    ],
)
def test_format_duration(delta: dt.timedelta, text: str) -> None:
    assert format_duration(delta) == text


@BOUNDED
@given(st.integers(min_value=0, max_value=10**8))
def test_duration_round_trip(seconds: int) -> None:
    delta = dt.timedelta(seconds=seconds)
    assert parse_duration(format_duration(delta)) == delta


@pytest.mark.parametrize(
    ("addr", "expected"),
    [("a.example.com:3080", ("a.example.com", 3080)), ("[::1]:22", ("::1", 22))],
)
def test_split_host_port(addr: str, expected: tuple[str, int]) -> None:
    assert split_host_port(addr) == expected


@pytest.mark.parametrize("addr", ["host", ":22", "host:", "host:0", "host:70000", "::1:22", "h:x"])
def test_split_host_port_rejects(addr: str) -> None:
    with pytest.raises(BadParameter, match="invalid address"):
        split_host_port(addr)


# --- envelope ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["alice", "alice@example.com", "sso.example.com", "team-1_x", "A"])
def test_valid_names(name: str) -> None:
    assert Metadata(name=name).name == name


@pytest.mark.parametrize("name", ["", ".hidden", "-x", "a b", "a/b", "x" * 254, "é"])
def test_invalid_names_say_what_is_allowed(name: str) -> None:
    with pytest.raises(ValidationError, match="is not a valid name: use letters, digits"):
        Metadata(name=name)


def test_metadata_rejects_unknown_fields_and_naive_expiry() -> None:
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        Metadata.model_validate({"name": "x", "lables": {}})
    with pytest.raises(ValidationError, match="timezone"):
        Metadata(name="x", expires=dt.datetime(2026, 1, 1))  # naive on purpose


def test_metadata_label_keys_are_checked() -> None:
    with pytest.raises(ValidationError, match="not a valid label key"):
        Metadata(name="x", labels={"bad key": "v"})


def test_metadata_dump_leaves_out_empty_fields() -> None:
    assert Metadata(name="x").model_dump() == {"name": "x"}
    full = Metadata(name="x", labels={"env": "prod"}, description="d")
    assert full.model_dump() == {"name": "x", "description": "d", "labels": {"env": "prod"}}


def test_expiry_uses_the_given_time() -> None:
    expires = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    token = Token(metadata={"name": "t" * 22, "expires": expires}, spec={"type": "node"})
    assert not token.is_expired(expires - dt.timedelta(seconds=1))
    assert token.is_expired(expires)
    assert not access_role().is_expired(expires)


def test_assignment_is_validated() -> None:
    role = access_role()
    with pytest.raises(ValidationError):
        role.spec.options.max_session_ttl = "forever"  # type: ignore[assignment]


# --- kinds ------------------------------------------------------------------------------------


def test_user() -> None:
    spec = {"roles": ["access"], "traits": {"logins": ["root"]}}
    user = User(metadata={"name": "alice"}, spec=spec)
    assert user.kind == "user" and user.version == "v1" and user.name == "alice"
    assert user.spec.traits == {"logins": ["root"]}
    with pytest.raises(ValidationError, match=r"spec\.roles"):
        User(metadata={"name": "alice"}, spec={"roles": []})
    with pytest.raises(ValidationError, match="password"):
        User.model_validate({"metadata": {"name": "a"}, "spec": {"roles": ["r"], "password": "x"}})


def test_role_defaults() -> None:
    role = Role(metadata={"name": "empty"})
    assert role.spec.options.max_session_ttl == dt.timedelta(hours=12)
    assert role.spec.options.port_forwarding is False
    # Every leaf unless a role says otherwise, written into the role so that it shows.
    assert role.spec.allow == RoleConditions(cluster_labels={"*": "*"})
    assert role.spec.deny == RoleConditions()
    assert role.model_dump()["spec"]["options"]["max_session_ttl"] == "12h"


def test_cluster_labels_default_to_every_leaf_only_when_left_out() -> None:
    def allow(conditions: str) -> dict[str, str | list[str]]:
        [role] = parse_resources("kind: role\nversion: v1\nmetadata: {name: r}\n"
                                 f"spec:\n  allow: {conditions}\n")
        assert isinstance(role, Role)
        return role.spec.allow.cluster_labels

    assert allow("{logins: [a]}") == {"*": "*"}
    assert allow("{cluster_labels: {env: [prod, staging]}}") == {"env": ["prod", "staging"]}
    assert allow("{cluster_labels: {}}") == {}  # said: no leaf
    assert RoleSpec(allow=RoleConditions(logins=["a"])).allow.cluster_labels == {"*": "*"}
    for bad, expected in [({"*": "prod"}, "the '*' key only goes with the value '*'"),
                          ({"env": "^(x$"}, "invalid regular expression")]:
        with pytest.raises(ValidationError, match=re.escape(expected)):
            RoleConditions(cluster_labels=bad)


def test_role_accepts_the_architecture_example() -> None:
    role = Role.model_validate(
        {
            "metadata": {"name": "team-payments"},
            "spec": {
                "options": {"max_session_ttl": "8h", "port_forwarding": False},
                "allow": {
                    "logins": ["{{internal.logins}}", "deploy"],
                    "node_labels": {"env": "prod", "team": "*", "tier": ["web", "^db-[0-9]+$"]},
                },
                "deny": {"logins": ["root"]},
            },
        }
    )
    assert role.spec.options.max_session_ttl == dt.timedelta(hours=8)
    assert role.spec.allow.node_labels["tier"] == ["web", "^db-[0-9]+$"]


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ({"options": {"max_session_ttl": "0s"}}, "duration must be positive"),
        ({"options": {"max_session_ttl": 3600}}, "expected a duration such as"),
        ({"allow": {"logins": ["{{internal.logins"]}}, "malformed template"),
        ({"allow": {"logins": [""]}}, "a login cannot be empty"),
        ({"allow": {"node_labels": {"env": "^(prod$"}}}, "invalid regular expression"),
        ({"allow": {"node_labels": {"env": []}}}, "expected a label value or a list"),
        ({"allow": {"node_labels": {"*": "prod"}}}, "the '\\*' key only goes with"),
        ({"allow": {"rules": [{"resources": ["users"], "verbs": ["list"]}]}}, "unknown resource"),
        ({"allow": {"rules": [{"resources": ["user"], "verbs": ["get"]}]}}, "unknown verb 'get'"),
        ({"allow": {"rules": [{"resources": [], "verbs": ["list"]}]}}, "at least 1 item"),
        ({"alow": {}}, "Extra inputs"),
    ],
)
def test_role_validation(spec: dict[str, object], expected: str) -> None:
    with pytest.raises(ValidationError, match=expected):
        Role.model_validate({"metadata": {"name": "r"}, "spec": spec})


def test_token() -> None:
    token = Token(metadata={"name": "-Ab_3" * 5}, spec={"type": "trusted_cluster"})
    assert token.name == "-Ab_3" * 5
    with pytest.raises(ValidationError, match="a token is made of letters"):
        Token(metadata={"name": "a.b"}, spec={"type": "node"})
    with pytest.raises(ValidationError, match=r"spec\.type"):
        Token(metadata={"name": "abc"}, spec={"type": "admin"})


def test_node() -> None:
    spec = {"hostname": "web1", "addr": "10.0.0.7:3022", "cluster": "us-east-1a", "host_id": "h1"}
    node = Node(metadata={"name": "h1", "labels": {"env": "prod"}}, spec=spec)
    assert node.status is None and node.metadata.labels == {"env": "prod"}
    with pytest.raises(ValidationError, match="port must be a number"):
        Node(metadata={"name": "h1"}, spec={**spec, "addr": "10.0.0.7:0"})


def test_cert_authority() -> None:
    ca = CertAuthority(
        metadata={"name": "sso.example.com"},
        spec={
            "cluster_name": "sso.example.com",
            "type": "host",
            "ssh_public_keys": [ssh_key_line(), ssh_key_line("ecdsa-sha2-nistp256")],
            "tls_certs": [PEM],
        },
    )
    assert ca.spec.type == "host"
    base = {"cluster_name": "c", "type": "user", "ssh_public_keys": [ssh_key_line()]}
    for spec, expected in [
        ({**base, "type": "admin"}, "spec.type"),
        ({**base, "ssh_public_keys": []}, "at least 1 item"),
        ({**base, "ssh_public_keys": ["ssh-ed25519"]}, "expected an OpenSSH public key line"),
        ({**base, "ssh_public_keys": ["ssh-ed25519 !!!"]}, "not valid base64"),
        ({**base, "ssh_public_keys": ["ssh-rsa " + ssh_key_line().split()[1]]}, "does not hold"),
        ({**base, "tls_certs": ["not a cert"]}, "expected one PEM block"),
        ({**base, "private_key": "x"}, "Extra inputs"),
    ]:
        with pytest.raises(ValidationError, match=expected):
            CertAuthority(metadata={"name": "c"}, spec=spec)


def test_cluster_name() -> None:
    cluster = ClusterName(
        metadata={"name": "cluster_name"}, spec={"cluster_name": "sso.example.com"}
    )
    assert cluster.spec.cluster_name == "sso.example.com"


def test_trusted_cluster() -> None:
    trusted = TrustedCluster.model_validate(
        {
            "metadata": {"name": "sso.example.com"},
            "spec": {
                "token": "secret",
                "proxy_addr": "sso.example.com:3080",
                "role_map": [
                    {"remote": "admin", "local": ["access", "auditor"]},
                    {"remote": "^dev-(.*)$", "local": ["team-$1"]},
                    {"remote": "*", "local": ["visitor"]},
                ],
            },
        }
    )
    assert trusted.spec.enabled is True and len(trusted.spec.role_map) == 3
    # The token is needed to join only; once used, the auth shows a trust without it.
    shown = trusted.spec.without_token()
    assert "token" not in shown.model_dump() and "token" in trusted.spec.model_dump()
    spec = {"token": "t", "proxy_addr": "a:1"}
    for bad, expected in [
        ({**spec, "role_map": [{"remote": "^(x$", "local": ["a"]}]}, "invalid regular expression"),
        ({**spec, "role_map": [{"remote": "x", "local": []}]}, "at least 1 item"),
        ({**spec, "role_map": [{"remote": "x", "local": ["a b"]}]}, "String should match"),
        ({**spec, "proxy_addr": "a"}, "expected host:port"),
    ]:
        with pytest.raises(ValidationError, match=expected):
            TrustedCluster(metadata={"name": "root"}, spec=bad)


def test_remote_cluster() -> None:
    remote = RemoteCluster(metadata={"name": "us-east-1a"})
    assert remote.status.connection == "offline" and remote.status.last_heartbeat is None
    seen = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    online = RemoteCluster(
        metadata={"name": "leaf"}, status={"connection": "online", "last_heartbeat": seen}
    )
    assert online.status.last_heartbeat == seen
    with pytest.raises(ValidationError, match=r"status\.connection"):
        RemoteCluster(metadata={"name": "leaf"}, status={"connection": "up"})


def test_kinds_without_status_reject_one() -> None:
    with pytest.raises(ValidationError, match="status"):
        Role.model_validate({"metadata": {"name": "r"}, "status": {"x": 1}})


# --- presets ----------------------------------------------------------------------------------


def test_presets() -> None:
    assert [role.name for role in preset_roles()] == ["access", "editor", "auditor"]
    access = access_role()
    assert access.spec.allow.logins == ["{{internal.logins}}"]
    assert access.spec.allow.node_labels == {"*": "*"}
    assert access.spec.allow.rules == [Rule(resources=["node"], verbs=["list", "read"])]
    editor = editor_role()
    assert editor.spec.allow.logins == []
    assert editor.spec.allow.rules == [Rule(resources=["*"], verbs=["*"])]
    auditor = auditor_role()
    assert auditor.spec.allow.rules == [
        Rule(resources=["event", "session"], verbs=["list", "read"])
    ]
    assert access_role() == access and access_role() is not access
    assert isinstance(access.spec, RoleSpec)


# --- templates and patterns -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("root", None),
        ("{{internal.logins}}", Template("internal", "logins")),
        ("{{ external.groups }}", Template("external", "groups")),
        ("adm-{{internal.logins}}-x", Template("internal", "logins", "adm-", "-x")),
    ],
)
def test_parse_template(text: str, expected: Template | None) -> None:
    assert parse_template(text) == expected


@pytest.mark.parametrize(
    "text", ["{{internal.logins", "{{logins}}", "{{secret.x}}", "{{internal.}}", "a}}", "{x}"]
)
def test_parse_template_rejects_malformed(text: str) -> None:
    with pytest.raises(BadParameter, match="malformed template"):
        parse_template(text)


@pytest.mark.parametrize(
    ("pattern", "value", "expected"),
    [
        ("prod", "prod", True),
        ("prod", "production", False),
        ("*", "", True),
        ("prod-*", "prod-eu", True),
        ("*.example.com", "a.b.example.com", True),
        ("a.c", "abc", False),  # a glob's dot is literal
        ("^dev-[0-9]+$", "dev-12", True),
        ("^dev-[0-9]+$", "dev-12x", False),
        ("^(a|b)$", "ab", False),
        ("^(x$", "(x", False),  # invalid regex: matches nothing
    ],
)
def test_match_pattern(pattern: str, value: str, expected: bool) -> None:
    assert match_pattern(pattern, value) is expected


def test_compile_pattern_rejects_backtracking_only_syntax() -> None:
    with pytest.raises(BadParameter, match="invalid regular expression"):
        compile_pattern("^(a)\\1$")


TELEPORT_TRUST = """kind: trusted_cluster
version: v2
metadata:
  name: root.example.com
spec:
  enabled: true
  token: abc
  tunnel_addr: root.example.com:3024
  web_proxy_addr: root.example.com:3080
  role_map:
    - remote: admin
      local: [access]
"""


def test_teleport_v2_trusted_cluster_loads_as_ours() -> None:
    [trusted] = parse_resources(TELEPORT_TRUST)
    assert isinstance(trusted, TrustedCluster)
    assert (trusted.version, trusted.spec.proxy_addr) == ("v1", "root.example.com:3080")
    assert "tunnel_addr" not in dump_yaml([trusted])
    # Only a tunnel address: our root serves tunnels on its proxy's one port.
    [alone] = parse_resources(TELEPORT_TRUST.replace("  web_proxy_addr: root.example.com:3080\n",
                                                     ""))
    assert isinstance(alone, TrustedCluster)
    assert alone.spec.proxy_addr == "root.example.com:3024"


@pytest.mark.parametrize(("change", "expected"), [
    (("  enabled: true\n", "  enabled: true\n  roles: [admin]\n"),
     "resource 1 (trusted_cluster): spec.roles: Teleport's older way to map roles is not "
     "implemented: write the mapping as spec.role_map (remote -> local roles)"),
    (("  enabled: true\n", "  enabled: true\n  kube_proxy_addr: x:1\n"),
     "resource 1 (trusted_cluster): unknown field spec.kube_proxy_addr"),
    (("tunnel_addr: root.example.com:3024", "tunnel_addr: nowhere"),
     "resource 1 (trusted_cluster): spec.tunnel_addr: invalid address 'nowhere': expected "
     "host:port"),
    (("tunnel_addr: root.example.com:3024", "proxy_addr: root.example.com:3080"),
     "resource 1 (trusted_cluster): spec: give proxy_addr or Teleport's "
     "web_proxy_addr/tunnel_addr, not both"),
    (("version: v2", "version: v1"),
     "resource 1 (trusted_cluster): missing field spec.proxy_addr; unknown field "
     "spec.tunnel_addr; unknown field spec.web_proxy_addr"),
])
def test_teleport_fields_we_do_not_implement_are_named(change: tuple[str, str],
                                                        expected: str) -> None:
    with pytest.raises(BadParameter) as info:
        parse_resources(TELEPORT_TRUST.replace(*change))
    assert str(info.value) == expected
