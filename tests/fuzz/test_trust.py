"""Fuzzing the trust snapshot (wire/trust.py), what every node and proxy decides with:
a snapshot round-trips through JSON; any other JSON value is BadParameter alone."""

from __future__ import annotations

import contextlib
import json

from hypothesis import example, given
from hypothesis import strategies as st

from gatehouse.errors import BadParameter
from gatehouse.types.cluster_access import ClusterAccess, ClusterRule
from gatehouse.types.trusted_cluster import RoleMapping
from gatehouse.wire.trust import PublicCA, RootCluster, TrustSnapshot
from tests.fuzz.budget import fuzz
from tests.types.test_yaml_io import roles

_text = st.text(max_size=8)
_cas = st.builds(PublicCA, cluster=_text, type=st.sampled_from(["user", "host"]),
                 ssh=_text.map(lambda t: f"ssh-ed25519 AAAA{t.split()[0] if t.split() else ''}"),
                 tls=_text)
_role_maps = st.lists(st.builds(RoleMapping, remote=st.sampled_from(["*", "a", "^(.*)$"]),
                                local=st.lists(st.sampled_from(["a", "$1"]), min_size=1,
                                               max_size=2)), max_size=2).map(tuple)


_labels = st.dictionaries(_text, _text, max_size=2)
_access = st.none() | st.builds(
    ClusterAccess, labels=_labels,
    roles=st.dictionaries(_text, st.builds(ClusterRule, allow=st.sampled_from(
        [{}, {"*": "*"}, {"env": ["prod", "^s.*$"]}]), deny=st.sampled_from([{}, {"a": "*"}])),
        max_size=2))


@st.composite
def snapshots(draw: st.DrawFn) -> TrustSnapshot:
    roots = {name: RootCluster(name=name, enabled=draw(st.booleans()), proxy_addr=draw(_text),
                               role_map=draw(_role_maps), host_ca_tls=draw(_text),
                               access=draw(_access))
             for name in draw(st.sets(_text, max_size=2))}
    return TrustSnapshot(
        cluster=draw(_text), user_cas=tuple(draw(st.lists(_cas, max_size=2))), roots=roots,
        leaf_host_cas=draw(st.dictionaries(_text, _text, max_size=2)),
        leaf_labels=draw(st.dictionaries(_text, _labels, max_size=2)),
        roles={r.metadata.name: r for r in draw(st.lists(roles(), max_size=2))},
        users=frozenset(draw(st.sets(_text, max_size=3))),
        record_sessions=draw(st.booleans()))


@fuzz(100)
@given(snapshots())
def test_snapshots_round_trip(snapshot: TrustSnapshot) -> None:
    again = TrustSnapshot.from_json(json.loads(json.dumps(snapshot.to_json())))
    assert again == snapshot
    assert again.user_ca_lines == snapshot.user_ca_lines


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | _text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_text, inner, max_size=3),
    max_leaves=10)
_fields = st.fixed_dictionaries({}, optional={
    "cluster": _json, "user_cas": st.lists(_json | _cas.map(PublicCA.to_json), max_size=2),
    "trusted_clusters": _json | st.lists(st.fixed_dictionaries(
        {"name": _json, "enabled": _json, "proxy_addr": _json, "role_map": _json,
         "host_ca_tls": _json, "access": _json}), max_size=2),
    "leaf_host_cas": _json, "leaf_labels": _json, "roles": _json, "users": _json,
    "session_recording": _json})


@fuzz(300)
@given(_json | _fields)
@example([])
def test_any_json_is_a_snapshot_or_bad_parameter(raw: object) -> None:
    with contextlib.suppress(BadParameter):
        TrustSnapshot.from_json(raw)
