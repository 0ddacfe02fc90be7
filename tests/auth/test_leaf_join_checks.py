"""A joining leaf's name and CA are checked before the root stores anything, and a
leaf's name reaches the API as one path part (review finding 1 of the hardening issue).

Before the fix, a leaf calling itself ``us-east-1b?`` had its CA stored, spent the
token on a 500, went unaudited, and ``rm rc/us-east-1b?`` removed ``us-east-1b``."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from gatehouse.auth import trustjoin
from gatehouse.auth.server import AuthServer
from gatehouse.auth.trustview import build_snapshot
from gatehouse.client.authclient import AuthClient
from gatehouse.errors import AccessDenied, BadParameter, NotFound
from gatehouse.pki import x509
from gatehouse.wire.trust import PublicCA
from tests.auth.conftest import API
from tests.auth.samples import CLUSTER, leaf_host_ca

BAD_NAMES = ["us-east-1b?", "us-east-1b/../us-east-1a", "../x", "a/b", "", "-leaf",
             "leaf a", "leaf%3Fa", "x" * 254, "leaf\n", "ünicode"]


async def _nothing_stored(server: AuthServer, token: str) -> None:
    assert await server.trust.leaf_cas() == []
    assert await server.trust.remotes.list() == []
    assert [t.metadata.name for t in await server.tokens.list()] == [token]  # not spent
    assert (await build_snapshot(server)).leaf_host_cas == {}


async def _refusal(server: AuthServer) -> str:
    [ev] = (await server.audit.search(types=["trusted_cluster.join.failure"])).events
    assert ev.remote_addr == "10.0.0.66"
    return ev.message


@pytest.mark.parametrize("name", BAD_NAMES)
async def test_a_leaf_with_an_invalid_name_stores_nothing(server: AuthServer, name: str
                                                         ) -> None:
    token = await server.create_token("trusted_cluster", dt.timedelta(minutes=15))
    leaf = replace(leaf_host_ca("leaf-a"), cluster=name)
    with pytest.raises(BadParameter, match="is not a valid cluster name"):
        await trustjoin.accept_leaf(server, token.secret, leaf, "10.0.0.66")
    await _nothing_stored(server, token.secret)
    assert "is not a valid cluster name" in await _refusal(server)


def _ca_variants() -> dict[str, PublicCA]:
    good = leaf_host_ca("leaf-a")
    now = dt.datetime.now(dt.UTC)
    key, user_ca = x509.new_ca("leaf-a", "user", now)
    _, other = x509.new_ca("us-east-1b", "host", now)
    _, not_ca = x509.new_ca("leaf-a", "host", now)
    leaf_cert = x509.issue(key, user_ca, ed25519.Ed25519PrivateKey.generate().public_key(),
                           x509.Identity(kind="host", name="p", cluster="leaf-a",
                                         roles=("proxy",)),
                           now=now, ttl=dt.timedelta(hours=1))
    rsa_line = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAAAgQDZ"
    return {
        # A second known_hosts line trusting the key for every name (review-sso finding 1):
        # the root's users would write it verbatim into their known_hosts.
        "a key line with a second line": replace(
            good, ssh=f"{good.ssh} x\n@cert-authority * {good.ssh}"),
        "a key line with a comment": replace(good, ssh=f"{good.ssh} leaf-a"),
        "a key line with a trailing newline": replace(good, ssh=good.ssh + "\n"),
        "a user CA": replace(good, tls=x509.pem_cert(user_ca)),
        "another cluster's CA": replace(good, tls=x509.pem_cert(other)),
        "a certificate that is no CA": replace(good, tls=x509.pem_cert(leaf_cert)),
        "two certificates": replace(good, tls=good.tls + x509.pem_cert(not_ca)),
        "no certificate": replace(good, tls="-----BEGIN CERTIFICATE-----"),
        "a truncated RSA key": replace(good, ssh=rsa_line),
        "garbage for an SSH key": replace(good, ssh="garbage"),
        "the type user": replace(good, type="user"),
    }


@pytest.mark.parametrize("what", sorted(_ca_variants()))
async def test_a_leaf_ca_that_is_not_its_host_ca_stores_nothing(server: AuthServer, what: str
                                                               ) -> None:
    token = await server.create_token("trusted_cluster", dt.timedelta(minutes=15))
    with pytest.raises(BadParameter):
        await trustjoin.accept_leaf(server, token.secret, _ca_variants()[what], "10.0.0.66")
    await _nothing_stored(server, token.secret)
    await _refusal(server)


async def test_a_leaf_ca_line_that_is_not_canonical_is_refused_in_one_line(
        server: AuthServer) -> None:
    token = await server.create_token("trusted_cluster", dt.timedelta(minutes=15))
    poisoned = _ca_variants()["a key line with a second line"]
    with pytest.raises(BadParameter) as refused:
        await trustjoin.accept_leaf(server, token.secret, poisoned, "10.0.0.66")
    message = str(refused.value)
    assert "\n" not in message
    assert message.startswith("the leaf's host CA ssh line ") and "canonical" in message


async def test_the_roots_own_name_is_refused_before_the_token_is_looked_at(
        server: AuthServer) -> None:
    with pytest.raises(AccessDenied, match="cannot share the root's name"):
        await trustjoin.accept_leaf(server, "not-a-token", leaf_host_ca(CLUSTER), "10.0.0.66")
    assert await server.trust.leaf_cas() == []


async def test_a_remote_cluster_whose_record_is_gone_still_loses_its_ca(server: AuthServer
                                                                       ) -> None:
    token = await server.create_token("trusted_cluster", dt.timedelta(minutes=15))
    await trustjoin.accept_leaf(server, token.secret, leaf_host_ca("leaf-a"), "10.0.0.9")
    await server.trust.remotes.delete("leaf-a")  # as a crash half-way through used to leave it
    assert "leaf-a" in (await build_snapshot(server)).leaf_host_cas
    await trustjoin.delete_remote_cluster(server, "leaf-a")
    assert await server.trust.leaf_cas() == []
    assert "leaf-a" not in (await build_snapshot(server)).leaf_host_cas
    with pytest.raises(NotFound, match="remote_cluster leaf-a not found"):
        await trustjoin.delete_remote_cluster(server, "leaf-a")


@pytest.mark.parametrize("name", ["us-east-1b?", "us-east-1b/../us-east-1b", "us-east-1b#x",
                                  "us-east-1b%3F"])
async def test_a_name_with_url_characters_names_no_other_leaf(api: API, name: str) -> None:
    server = api.server
    token = await server.create_token("trusted_cluster", dt.timedelta(minutes=15))
    await trustjoin.accept_leaf(server, token.secret, leaf_host_ca("us-east-1b"), "10.0.0.9")
    admin = AuthClient(await api.admin())
    with pytest.raises((NotFound, BadParameter)):  # not found, or not a name at all
        await admin.delete_resource("remote_cluster", name)
    assert [rc.metadata.name for rc in await server.trust.remotes.list()] == ["us-east-1b"]
    assert [ca.cluster for ca in await server.trust.leaf_cas()] == ["us-east-1b"]


# review-sso finding 2: a leaf's name is the DNS suffix `gsh config` routes to it
# (`Host *.LEAF`) and scopes its host CA to (`@cert-authority *.LEAF`). Before the fix a
# leaf could join as `com` or as `example.com` under the root `sso.example.com`.
NAMES_THAT_COVER_OTHERS = {
    "com": "could be a top-level domain",
    "COM": "could be a top-level domain",
    "internal": "could be a top-level domain",
    "xn--p1ai": "could be a top-level domain",
    "example.com": "the root's name sso.example.com ends with it",
    "Example.COM": "the root's name sso.example.com ends with it",
    "x.sso.example.com": "it ends with the root's name sso.example.com",
    "SSO.example.com": "cannot share the root's name",
    "example..com": "an empty label",
    "leaf.example.com.": "an empty label",
}


@pytest.mark.parametrize("name", sorted(NAMES_THAT_COVER_OTHERS))
async def test_a_leaf_name_that_covers_other_names_is_refused(server: AuthServer, name: str
                                                             ) -> None:
    token = await server.create_token("trusted_cluster", dt.timedelta(minutes=15))
    with pytest.raises((BadParameter, AccessDenied)) as refused:
        await trustjoin.accept_leaf(server, token.secret, leaf_host_ca(name), "10.0.0.66")
    assert NAMES_THAT_COVER_OTHERS[name] in str(refused.value), refused.value
    assert "\n" not in str(refused.value)
    await _nothing_stored(server, token.secret)
    assert NAMES_THAT_COVER_OTHERS[name] in await _refusal(server)


@pytest.mark.parametrize("name", ["us-east-1a", "leaf-a", "leaf.example.com", "leaf.example",
                                  "a1", "eu.us-east-1a"])
async def test_an_ordinary_leaf_name_joins(server: AuthServer, name: str) -> None:
    token = await server.create_token("trusted_cluster", dt.timedelta(minutes=15))
    await trustjoin.accept_leaf(server, token.secret, leaf_host_ca(name), "10.0.0.9")
    assert [ca.cluster for ca in await server.trust.leaf_cas()] == [name]


# A leaf's name against the other leaves' (review finding, docs/security.md): names one
# of which ends with the other, or alike but for case, share the host names `gsh config`
# sends to a leaf. Before the fix each of these joined beside the first.
NESTED = [("us-east-1a", "eu.us-east-1a", "it ends with that name"),
          ("eu.us-east-1a", "us-east-1a", "that name ends with it"),
          ("us-east-1a", "US-East-1A", "the same name but for case"),
          ("leaf.example.com", "a.b.leaf.example.com", "it ends with that name")]


@pytest.mark.parametrize(("first", "second", "why"), NESTED)
async def test_a_leaf_named_within_another_leaf_s_name_is_refused(
        server: AuthServer, first: str, second: str, why: str) -> None:
    await trustjoin.accept_leaf(server, (await server.create_token(
        "trusted_cluster", dt.timedelta(minutes=15))).secret, leaf_host_ca(first), "10.0.0.9")
    token = await server.create_token("trusted_cluster", dt.timedelta(minutes=15))
    with pytest.raises(BadParameter) as refused:
        await trustjoin.accept_leaf(server, token.secret, leaf_host_ca(second), "10.0.0.66")
    message = str(refused.value)
    assert f"with the joined leaf {first!r} ({why})" in message and "\n" not in message
    assert [ca.cluster for ca in await server.trust.leaf_cas()] == [first]
    assert [rc.metadata.name for rc in await server.trust.remotes.list()] == [first]
    assert token.secret in [t.metadata.name for t in await server.tokens.list()]  # not spent
    assert why in await _refusal(server)
    # Once the first is removed, the name is free.
    await trustjoin.delete_remote_cluster(server, first)
    await trustjoin.accept_leaf(server, token.secret, leaf_host_ca(second), "10.0.0.66")
    assert [ca.cluster for ca in await server.trust.leaf_cas()] == [second]


@pytest.mark.parametrize("second", ["xus-east-1a", "us-east-1ab", "us-east-1b", "a.us-east-2"])
async def test_leaves_whose_names_only_look_alike_both_join(server: AuthServer, second: str
                                                           ) -> None:
    for name in ("us-east-1a", second):
        token = await server.create_token("trusted_cluster", dt.timedelta(minutes=15))
        await trustjoin.accept_leaf(server, token.secret, leaf_host_ca(name), "10.0.0.9")
    assert sorted(ca.cluster for ca in await server.trust.leaf_cas()) == \
        sorted(["us-east-1a", second])


async def test_a_leaf_joining_again_under_its_own_name_is_no_clash(server: AuthServer) -> None:
    ca = leaf_host_ca("us-east-1a")
    for _ in range(2):
        token = await server.create_token("trusted_cluster", dt.timedelta(minutes=15))
        await trustjoin.accept_leaf(server, token.secret, ca, "10.0.0.9")
    assert [ca.cluster for ca in await server.trust.leaf_cas()] == ["us-east-1a"]
