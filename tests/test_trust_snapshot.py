"""What nodes read from the auth's trust snapshot: recording is on unless it says off;
cluster labels, both ways."""

from __future__ import annotations

import json

import pytest

from gatehouse.errors import BadParameter
from gatehouse.types.cluster_access import ClusterAccess, ClusterRule
from gatehouse.wire.trust import RootCluster, TrustSnapshot


@pytest.mark.parametrize(("value", "record"), [
    ("node", True), ("off", False), (None, True), ("proxy", True), (0, True),
])
def test_sessions_are_recorded_unless_the_auth_says_off(value: object, record: bool) -> None:
    raw = {"cluster": "c"} if value is None else {"cluster": "c", "session_recording": value}
    assert TrustSnapshot.from_json(raw).record_sessions is record


def test_cluster_labels_travel_both_ways() -> None:
    """A root's leaves' labels (for its proxies), and on a leaf what each root said of
    them (None until it said anything: the leaf then refuses the root's users)."""
    said = ClusterAccess(labels={"env": "prod"},
                         roles={"ops": ClusterRule(allow={"env": ["prod", "^stag.*$"]},
                                                   deny={"customer": "acme"})})
    roots = {name: RootCluster(name=name, enabled=True, proxy_addr=f"{name}:3080", role_map=(),
                               host_ca_tls="", access=access)
             for name, access in (("heard", said), ("silent", None))}
    snapshot = TrustSnapshot(cluster="leaf", roots=roots, leaf_labels={"a": {"env": "prod"}})
    again = TrustSnapshot.from_json(json.loads(json.dumps(snapshot.to_json())))
    assert again == snapshot
    assert again.roots["heard"].cluster_refusal(["ops"], "leaf") == ""
    assert "has not yet received" in again.roots["silent"].cluster_refusal(["ops"], "leaf")
    for bad in ({"trusted_clusters": [{**snapshot.to_json()["trusted_clusters"][0],
                                       "access": {"labels": []}}]},
                {"leaf_labels": {"a": 5}}, {"leaf_labels": []}):
        with pytest.raises(BadParameter, match="malformed trust snapshot"):
            TrustSnapshot.from_json({**snapshot.to_json(), **bad})
