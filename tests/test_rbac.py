"""RBAC decisions: logins on nodes, API rules, deny beats allow, templates, label selectors."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gatehouse.rbac import (
    Decision,
    allowed_logins,
    allows_port_forwarding,
    can_see_node,
    check_cluster_access,
    check_file_transfer,
    check_rule,
    check_ssh_access,
    interpolate,
    labels_match,
    max_session_ttl,
    recording_required,
)
from gatehouse.types import Role, access_role, auditor_role, editor_role
from gatehouse.types.cluster_access import ClusterAccess
from gatehouse.types.template import UserTraits

BOUNDED = settings(max_examples=100, deadline=None)
TRAITS = UserTraits(internal={"logins": ["alice", "deploy"], "groups": ["dev", "ops"]},
                    external={"groups": ["dev", "ops"]})


def role(name: str, *, allow: dict[str, Any] | None = None, deny: dict[str, Any] | None = None,
         **options: Any) -> Role:
    return Role.model_validate(
        {"metadata": {"name": name},
         "spec": {"allow": allow or {}, "deny": deny or {}, "options": options}}
    )


def ssh(roles: list[Role], login: str, labels: dict[str, str] | None = None,
        traits: UserTraits | None = None) -> Decision:
    return check_ssh_access(
        roles, login=login, node_labels=labels or {}, traits=TRAITS if traits is None else traits
    )


# --- interpolate -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (["root"], ["root"]),
        (["{{internal.logins}}"], ["alice", "deploy"]),
        (["{{external.groups}}", "root"], ["dev", "ops", "root"]),
        (["{{internal.missing}}"], []),
        (["{{ internal.logins }}"], ["alice", "deploy"]),
        (["adm-{{internal.groups}}"], ["adm-dev", "adm-ops"]),
        (["{{internal.logins", "root", "{{bad}}", "x}}"], ["root"]),  # malformed: dropped
        (["root", "root", "{{internal.logins}}", "alice"], ["root", "alice", "deploy"]),
        ([""], []),
    ],
)
def test_interpolate(values: list[str], expected: list[str]) -> None:
    assert interpolate(values, TRAITS) == expected


@BOUNDED
@given(st.lists(st.text(alphabet=st.characters(exclude_characters="{}"), min_size=1), max_size=5))
def test_interpolate_passes_literals_through(values: list[str]) -> None:
    assert interpolate(values, TRAITS) == list(dict.fromkeys(values))


# --- label selectors ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("selector", "labels", "expected"),
    [
        ({"*": "*"}, {}, True),
        ({"*": "*"}, {"env": "prod"}, True),
        ({"*": ["*"]}, {"env": "prod"}, True),
        ({}, {"env": "prod"}, False),  # an empty selector selects nothing
        ({"env": "prod"}, {"env": "prod", "team": "x"}, True),
        ({"env": "prod"}, {"env": "staging"}, False),
        ({"env": "prod"}, {}, False),
        ({"env": "prod", "team": "pay"}, {"env": "prod"}, False),  # every key must match
        ({"env": "*"}, {"env": "anything"}, True),
        ({"env": "*"}, {"team": "x"}, False),  # "*" needs the key to exist
        ({"env": "prod-*"}, {"env": "prod-eu"}, True),
        ({"env": "prod-*"}, {"env": "dev-eu"}, False),
        ({"env": ["prod", "staging"]}, {"env": "staging"}, True),
        ({"env": ["prod", "staging"]}, {"env": "dev"}, False),
        ({"host": "^web-[0-9]+$"}, {"host": "web-12"}, True),
        ({"host": "^web-[0-9]+$"}, {"host": "web-12-old"}, False),  # full match
        ({"host": "^web$"}, {"host": "xweb"}, False),
        ({"*": "prod"}, {"env": "prod"}, False),  # rejected by roles; fails closed here
    ],
)
def test_labels_match(selector: dict[str, Any], labels: dict[str, str], expected: bool) -> None:
    assert labels_match(selector, labels) is expected


_words = st.text(alphabet="abcde01", min_size=1, max_size=6)


@BOUNDED
@given(st.dictionaries(_words, _words, max_size=5), st.data())
def test_a_subset_of_a_nodes_labels_selects_it(labels: dict[str, str], data: st.DataObject) -> None:
    assert labels_match({"*": "*"}, labels)
    keys = data.draw(st.lists(st.sampled_from(sorted(labels)), unique=True)) if labels else []
    subset = {key: labels[key] for key in keys}
    assert labels_match(subset, labels) is bool(subset)


# --- SSH access --------------------------------------------------------------------------------


def test_access_preset_allows_own_logins_everywhere() -> None:
    decision = ssh([access_role()], "alice", {"env": "prod"})
    assert decision == Decision(True, 'login "alice" allowed by role access')
    assert ssh([access_role()], "deploy").allowed


def test_login_not_allowed() -> None:
    decision = ssh([access_role(), auditor_role()], "bob")
    assert decision == Decision(False, 'login "bob" is not allowed by roles access, auditor')
    assert not ssh([editor_role()], "alice").allowed  # editor has no logins


def test_login_allowed_but_node_labels_do_not_match() -> None:
    dev = role("dev", allow={"logins": ["bob"], "node_labels": {"env": "dev"}})
    decision = ssh([dev], "bob", {"env": "prod", "team": "x"})
    assert decision == Decision(
        False, 'roles dev allow login "bob" but not on a node with labels env=prod, team=x'
    )
    assert ssh([dev], "bob", {"env": "dev"}).allowed


def test_login_and_labels_must_come_from_the_same_role() -> None:
    logins_only = role("a", allow={"logins": ["bob"], "node_labels": {"env": "dev"}})
    labels_only = role("b", allow={"logins": ["carol"], "node_labels": {"env": "prod"}})
    assert not ssh([logins_only, labels_only], "bob", {"env": "prod"}).allowed


def test_no_roles_and_empty_login_are_denied() -> None:
    assert ssh([], "alice") == Decision(False, "the user has no roles")
    assert ssh([access_role()], "") == Decision(False, "no login given")


def test_deny_login_beats_allow() -> None:
    no_root = role("no-root", deny={"logins": ["root"]})
    everything = role("all", allow={"logins": ["root", "alice"], "node_labels": {"*": "*"}})
    decision = ssh([everything, no_root], "root")
    assert decision == Decision(False, 'denied by role no-root: login "root"')
    assert ssh([everything, no_root], "alice").allowed


def test_deny_login_template() -> None:
    everything = role("all", allow={"logins": ["alice"], "node_labels": {"*": "*"}})
    no_own = role("no-own", deny={"logins": ["{{internal.logins}}"]})
    assert ssh([everything, no_own], "alice").reason == 'denied by role no-own: login "alice"'
    assert ssh([everything, no_own], "alice", traits=UserTraits()).allowed


def test_deny_node_labels_beat_allow_whatever_the_login() -> None:
    everything = role("all", allow={"logins": ["alice"], "node_labels": {"*": "*"}})
    no_prod = role("no-prod", deny={"node_labels": {"env": ["prod", "^pci-.*$"]}})
    decision = ssh([everything, no_prod], "alice", {"env": "prod"})
    assert decision == Decision(False, "denied by role no-prod: node labels env=prod")
    assert not ssh([everything, no_prod], "alice", {"env": "pci-eu"}).allowed
    assert ssh([everything, no_prod], "alice", {"env": "dev"}).allowed
    # An empty deny selector denies no node.
    assert ssh([everything, role("empty", deny={"logins": ["x"]})], "alice").allowed


@pytest.mark.parametrize("value", ["prod\nx", "prod\ud800", "prod-\u2028"])
def test_a_deny_glob_matches_every_character_of_a_label(value: str) -> None:
    # Label values reach the auth as JSON, which can carry newlines and lone surrogates.
    everything = role("all", allow={"logins": ["alice"], "node_labels": {"*": "*"}})
    no_prod = role("no-prod", deny={"node_labels": {"env": "prod*"}})
    assert not ssh([everything, no_prod], "alice", {"env": value}).allowed


def test_deny_wildcard_denies_every_node() -> None:
    locked = role("locked", deny={"node_labels": {"*": "*"}})
    decision = ssh([access_role(), locked], "alice")
    assert decision == Decision(False, "denied by role locked: node labels (none)")


def test_trait_logins_for_a_mapped_root_user() -> None:
    # A leaf's access role fills {{internal.logins}} from the root-signed certificate's traits.
    own = UserTraits(internal={"logins": ["ubuntu"]})
    assert ssh([access_role()], "ubuntu", traits=own).allowed
    assert not ssh([access_role()], "ubuntu", traits=UserTraits()).allowed
    # An SSO user's claims are external: a claim named logins is not {{internal.logins}}.
    sso = UserTraits.of({"logins": ["ubuntu"]}, sso=True)
    assert not ssh([access_role()], "ubuntu", traits=sso).allowed
    assert interpolate(["{{internal.logins}}", "{{external.logins}}"], sso) == ["ubuntu"]


@BOUNDED
@given(_words, st.lists(_words, max_size=4), st.lists(_words, max_size=4),
       st.dictionaries(_words, _words, max_size=3))
def test_deny_always_beats_allow(login: str, allowed: list[str], denied: list[str],
                                 labels: dict[str, str]) -> None:
    allow = role("allow", allow={"logins": allowed, "node_labels": {"*": "*"}})
    deny = role("deny", deny={"logins": denied})
    expected = login in allowed and login not in denied
    assert ssh([allow, deny], login, labels).allowed is expected
    assert (login in allowed_logins([allow, deny], UserTraits())) is expected


def test_can_see_node() -> None:
    dev = role("dev", allow={"node_labels": {"env": "dev"}})
    no_pci = role("no-pci", deny={"node_labels": {"pci": "*"}})
    assert can_see_node([access_role()], {})
    assert can_see_node([dev], {"env": "dev"})
    assert not can_see_node([dev], {"env": "prod"})
    assert not can_see_node([access_role(), no_pci], {"env": "dev", "pci": "yes"})
    assert not can_see_node([editor_role()], {"env": "dev"})
    assert not can_see_node([], {})


# --- API rules ---------------------------------------------------------------------------------


def test_rules_of_presets() -> None:
    assert check_rule([editor_role()], resource="user", verb="delete") == Decision(
        True, '"delete" on "user" allowed by role editor'
    )
    assert check_rule([access_role()], resource="node", verb="list").allowed
    assert check_rule([access_role()], resource="node", verb="read").allowed
    assert not check_rule([access_role()], resource="node", verb="delete").allowed
    assert check_rule([auditor_role()], resource="event", verb="list").allowed
    assert check_rule([auditor_role()], resource="session", verb="read").allowed
    assert check_rule([auditor_role()], resource="role", verb="read") == Decision(
        False, '"read" on "role" is not allowed by roles auditor'
    )


def test_rules_deny_by_default_and_deny_beats_allow() -> None:
    assert check_rule([], resource="user", verb="list") == Decision(
        False, '"list" on "user" is not allowed: the user has no roles'
    )
    no_delete = role("no-delete", deny={"rules": [{"resources": ["*"], "verbs": ["delete"]}]})
    assert check_rule([editor_role(), no_delete], resource="role", verb="delete") == Decision(
        False, 'denied by role no-delete: "delete" on "role"'
    )
    assert check_rule([editor_role(), no_delete], resource="role", verb="update").allowed
    no_tokens = role("no-tokens", deny={"rules": [{"resources": ["token"], "verbs": ["*"]}]})
    assert not check_rule([editor_role(), no_tokens], resource="token", verb="list").allowed
    assert check_rule([editor_role(), no_tokens], resource="user", verb="list").allowed


@pytest.mark.parametrize(("resource", "verb"), [
    ("event", "export"), ("recording", "upload"), ("node", "heartbeat"),
    ("remote_event", "create"), ("trust", "read"), ("host", "renew")])
def test_a_wildcard_stands_only_for_what_a_role_may_name(resource: str, verb: str) -> None:
    """``*`` is every resource of RULE_RESOURCES and verb of RULE_VERBS, never the hosts'
    own calls (exporting events, uploading recordings, heartbeats)."""
    everything = role("everything", allow={"rules": [{"resources": ["*"], "verbs": ["*"]}]})
    events = role("events", allow={"rules": [{"resources": ["event"], "verbs": ["*"]}]})
    assert not check_rule([editor_role()], resource=resource, verb=verb).allowed
    assert not check_rule([everything, events], resource=resource, verb=verb).allowed
    assert check_rule([events], resource="event", verb="list").allowed


# --- options and principals --------------------------------------------------------------------


def test_max_session_ttl_is_the_minimum() -> None:
    assert max_session_ttl([access_role()]) == dt.timedelta(hours=12)
    short = role("short", max_session_ttl="1h30m")
    assert max_session_ttl([access_role(), short]) == dt.timedelta(minutes=90)
    assert max_session_ttl([]) == dt.timedelta(0)


def test_port_forwarding() -> None:
    assert not allows_port_forwarding([access_role(), editor_role()])
    assert allows_port_forwarding([access_role(), role("pf", port_forwarding=True)])
    assert not allows_port_forwarding([])


def test_file_transfer_is_allowed_unless_a_role_refuses_it() -> None:
    assert check_file_transfer([access_role(), editor_role()]).allowed
    refused = check_file_transfer([access_role(), role("nofiles", file_transfer=False)])
    assert refused == Decision(False, "file transfer is not allowed: role nofiles sets "
                                      "options.file_transfer: false")
    assert not check_file_transfer([]).allowed


def test_one_strict_role_requires_every_session_recorded() -> None:
    assert recording_required([access_role(), editor_role()]) is None
    assert recording_required([]) is None
    strict = role("audited", record_session={"ssh": "strict"})
    assert recording_required([access_role(), strict]) == (
        "role audited requires every session recorded (options.record_session.ssh: strict)")
    # Teleport's shape: ``default`` stands for ``ssh`` left out, ``ssh`` said wins.
    assert recording_required([role("d", record_session={"default": "strict"})]) is not None
    assert recording_required([role("d", record_session={
        "default": "strict", "ssh": "best_effort"})]) is None


def test_record_session_takes_its_two_modes_only() -> None:
    with pytest.raises(ValueError, match="best_effort"):
        role("bad", record_session={"ssh": "always"})
    with pytest.raises(ValueError, match="desktop"):
        role("bad", record_session={"desktop": "strict"})
    stored = role("d", record_session={"default": "strict"}).model_dump(mode="json")
    assert stored["spec"]["options"]["record_session"] == {"default": "strict", "ssh": "strict"}


def test_allowed_logins() -> None:
    ops = role("ops", allow={"logins": ["root", "{{internal.logins}}", "zed"]},
               deny={"logins": ["zed"]})
    assert allowed_logins([access_role(), ops], TRAITS) == ["alice", "deploy", "root"]
    no_root = role("no-root", deny={"logins": ["root"]})
    assert allowed_logins([ops, no_root], UserTraits()) == []
    assert allowed_logins([editor_role()], TRAITS) == []


# --- cluster labels: which leaves a root user sees and reaches -----------------------------

PROD_ONLY = role("prod-only", allow={"cluster_labels": {"env": "prod"}})
NO_ACME = role("no-acme", deny={"cluster_labels": {"customer": "acme"}})
NOTHING = role("nothing", allow={"cluster_labels": {}})
ROOT_ROLES = [access_role(), PROD_ONLY, NO_ACME, NOTHING]


def leaf(roles: list[str], **labels: str) -> Decision:
    return check_cluster_access(ClusterAccess.of(ROOT_ROLES, labels), roles, "leaf-1")


def test_cluster_labels_select_leaves_as_node_labels_select_nodes() -> None:
    assert leaf(["prod-only"], env="prod") == Decision(
        True, "cluster leaf-1 allowed by role prod-only")
    assert leaf(["prod-only"], env="staging") == Decision(
        False, "roles prod-only do not select cluster leaf-1 (labels env=staging)")
    assert not leaf(["prod-only"]).allowed  # an unlabelled leaf is no prod leaf
    assert not leaf(["nothing"], env="prod").allowed  # {} selects no leaf


def test_a_role_that_does_not_say_reaches_every_leaf_and_roles_add_up() -> None:
    assert leaf(["access"]).allowed and leaf(["access"], env="staging").allowed
    assert leaf(["prod-only", "access"], env="staging").allowed  # allows add up


def test_a_matching_deny_beats_every_allow() -> None:
    assert leaf(["access", "no-acme"], customer="acme") == Decision(
        False, "denied by role no-acme: cluster leaf-1 has labels customer=acme")
    assert leaf(["access", "no-acme"], customer="other").allowed


def test_deny_by_default_without_word_from_the_root_or_without_a_known_role() -> None:
    assert check_cluster_access(None, ["access"], "leaf-1") == Decision(
        False, "cluster leaf-1 has not yet received its root's cluster labels and roles "
               "(they come over its tunnel to the root)")
    assert leaf(["deleted-at-root"]) == Decision(
        False, "cluster leaf-1: none of the roles deleted-at-root exists at the root")
    assert not leaf([]).allowed


@BOUNDED
@given(st.lists(st.sampled_from([r.name for r in ROOT_ROLES] + ["ghost"]), max_size=4),
       st.dictionaries(st.sampled_from(["env", "customer"]),
                       st.sampled_from(["prod", "staging", "acme"]), max_size=2))
def test_cluster_access_is_what_the_roles_say(names: list[str], labels: dict[str, str]) -> None:
    held = [r for r in ROOT_ROLES if r.name in names]
    expected = not any(labels_match(r.spec.deny.cluster_labels, labels) for r in held) and any(
        labels_match(r.spec.allow.cluster_labels, labels) for r in held)
    assert leaf(names, **labels).allowed == expected
