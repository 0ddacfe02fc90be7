"""What a leaf takes over a root's tunnel (issue 15, finding 7; docs/security.md,
"Relayed certificates"): a relayed certificate is a bearer token, taken only as the
word of the root whose tunnel carried it, and only from that root's proxy."""

from __future__ import annotations

import datetime as dt

import pytest

from gatehouse.errors import AccessDenied
from gatehouse.tunnel.relaycheck import check_relayed, check_root_proxy, claimed_user
from tests.tunnel.relayed import LEAF, NOW, TTL, Root, leaf_trust

A, B, C = Root.new("root-a"), Root.new("root-b"), Root.new("root-c")
TRUST = leaf_trust(A, B, disabled=(C,))


def test_a_roots_own_user_is_taken_over_its_tunnel() -> None:
    ident = check_relayed(A.user_der("alice"), "root-a", TRUST, NOW)
    assert (ident.kind, ident.name, ident.cluster) == ("user", "alice", "root-a")
    # routed to this very leaf, too
    assert check_relayed(A.user_der(route=LEAF), "root-a", TRUST, NOW).name == "alice"


def test_a_certificate_of_another_root_is_refused() -> None:
    with pytest.raises(AccessDenied, match="not signed by the user CA of root-a, whose tunnel"):
        check_relayed(B.user_der("bob"), "root-a", TRUST, NOW)
    with pytest.raises(AccessDenied, match="not signed by the user CA of root-b, whose tunnel"):
        check_relayed(A.user_der("alice"), "root-b", TRUST, NOW)


@pytest.mark.parametrize(("at", "reason"), [(NOW + TTL + TTL, "expired"),
                                            (NOW - TTL, "not valid yet")])
def test_validity_is_the_leafs_clock(at: dt.datetime, reason: str) -> None:
    der = A.user_der()
    assert check_relayed(der, "root-a", TRUST, NOW).name == "alice"
    with pytest.raises(AccessDenied, match=f"the relayed certificate.* {reason}"):
        check_relayed(der, "root-a", TRUST, at)  # its signature is remembered, not its time


def test_a_certificate_routed_to_another_cluster_is_refused() -> None:
    with pytest.raises(AccessDenied, match="for cluster 'leaf-2', not leaf-1"):
        check_relayed(A.user_der(route="leaf-2"), "root-a", TRUST, NOW)


def test_only_the_roots_users_count() -> None:
    with pytest.raises(AccessDenied, match="not one of root-a's users'"):
        check_relayed(A.user_der(kind="host"), "root-a", TRUST, NOW)
    with pytest.raises(AccessDenied, match="not one of root-a's users'"):
        check_relayed(A.user_der(cluster="root-b"), "root-a", TRUST, NOW)


def test_a_disabled_or_unknown_root_vouches_for_nobody() -> None:
    with pytest.raises(AccessDenied, match="trust in root root-c is not enabled"):
        check_relayed(C.user_der(), "root-c", TRUST, NOW)
    with pytest.raises(AccessDenied, match="trust in root root-z is not enabled"):
        check_relayed(A.user_der(), "root-z", TRUST, NOW)


def test_no_or_a_malformed_certificate_is_refused() -> None:
    with pytest.raises(AccessDenied, match="needs the certificate of a root cluster user"):
        check_relayed(b"", "root-a", TRUST, NOW)
    with pytest.raises(AccessDenied, match="malformed"):
        check_relayed(b"\x30\x03der", "root-a", TRUST, NOW)
    assert claimed_user(b"\x30\x03der") == ""
    assert claimed_user(B.user_der("bob")) == "bob"


def test_only_the_roots_proxy_is_the_far_end_of_its_tunnel() -> None:
    check_root_proxy(A.host_der("proxy"), "root-a")
    with pytest.raises(AccessDenied, match=r"not a proxy of root-a .*says auth of 'root-a'"):
        check_root_proxy(A.host_der("auth"), "root-a")
    with pytest.raises(AccessDenied, match="not a proxy of root-a"):
        check_root_proxy(B.host_der("proxy"), "root-a")
    with pytest.raises(AccessDenied, match="not a proxy of root-a"):
        check_root_proxy(A.user_der(), "root-a")
    with pytest.raises(AccessDenied, match="showed no certificate"):
        check_root_proxy(None, "root-a")
