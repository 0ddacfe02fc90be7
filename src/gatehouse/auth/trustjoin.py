"""Trusted-cluster joins, both ends (ARCHITECTURE §3): a leaf joining a root or changing
its trust in place, and a root accepting a leaf or forgetting one. The network half of
a leaf's join is the server's ``join_root``; every refusal is audited with its reason.
"""

from __future__ import annotations

import logging

from gatehouse.auth.leafcheck import check_leaf_ca, clash_refusal
from gatehouse.auth.server import AuthServer
from gatehouse.errors import AccessDenied, AlreadyExists, BadParameter, NotFound
from gatehouse.types.trusted_cluster import TrustedCluster
from gatehouse.wire.trust import PublicCA

__all__ = ["accept_leaf", "delete_remote_cluster", "delete_trusted_cluster",
           "upsert_trusted_cluster"]

log = logging.getLogger(__name__)


async def upsert_trusted_cluster(server: AuthServer, tc: TrustedCluster, *, force: bool) -> bool:
    """Join the root named by ``tc`` (first time, or again with a new token: after the
    root removed this leaf) or apply enabled/role_map (``force``).

    Returns True when a join happened. The token a trust joined with is kept, so
    re-running the file it was created from is an update: idempotent.
    """
    name = tc.metadata.name
    if name == server.cluster:
        raise BadParameter(f"a cluster cannot trust itself ({name})")
    tc = tc.model_copy(update={"status": None})  # judged when shown, never stored
    try:
        existing: TrustedCluster | None = await server.trust.trusted.get(name)
    except NotFound:
        existing = None
    if existing is not None and not force:
        raise AlreadyExists(f"trusted_cluster {name} already exists; use `gatectl create -f` "
                            "to change enabled or role_map, or with a new token to join "
                            "again")
    used = existing.spec.token if existing is not None else ""
    joined = bool(await server.trust.root_cas(name))
    if not joined or tc.spec.token not in ("", used):
        if not tc.spec.token:
            raise BadParameter(f"trusted_cluster {name} needs spec.token to join: a token "
                               "from the root (`gatectl tokens add --type=trusted_cluster` "
                               "there)")
        cas = await server.join_root(tc, server.cas["host"].public())
        await server.trust.store_root(tc, cas)
        await server.audit.emit("trusted_cluster.create", fields={
            "root": name, "proxy_addr": tc.spec.proxy_addr, "enabled": tc.spec.enabled,
            "again": joined})
        return True
    if tc.spec.enabled and await server.trust.refused_by(name):
        raise BadParameter(
            f"the root {name} no longer takes this cluster's tunnel (did it remove this "
            "leaf?): to join again, run `gatectl create -f` with a new token from the root "
            "(`gatectl tokens add --type=trusted_cluster` there); nothing was changed")
    spec = tc.spec.model_copy(update={"token": used})
    await server.trust.trusted.upsert(tc.model_copy(update={"spec": spec}))
    await server.audit.emit("trusted_cluster.update", fields={
        "root": name, "enabled": tc.spec.enabled,
        "role_map": [m.model_dump() for m in tc.spec.role_map]})
    return False


async def delete_trusted_cluster(server: AuthServer, name: str) -> None:
    await server.trust.remove_root(name)
    await server.audit.emit("trusted_cluster.delete", fields={"root": name})


async def accept_leaf(server: AuthServer, token: str, leaf_ca: PublicCA,
                      remote_addr: str) -> list[PublicCA]:
    """Root side of a join: validate it and remember the leaf's host CA (raises on any
    refusal); returns this cluster's public user and host CAs."""
    leaf = leaf_ca.cluster
    try:
        check_leaf_ca(leaf_ca, server.cluster)
        await server.check_token(token, "trusted_cluster", "a trusted cluster")
        if other := await server.trust.leaf_names.clash(leaf):
            raise BadParameter(clash_refusal(leaf, other))
        held = await server.trust.leaf_ca(leaf)
        if held is not None and (held.ssh, held.tls) != (leaf_ca.ssh, leaf_ca.tls):
            raise AlreadyExists(f"cluster {leaf} is already joined with a different host "
                                f"CA; remove it first with `gatectl rm rc/{leaf}`")
        await server.spend_token(token)
    except (AccessDenied, AlreadyExists, BadParameter) as exc:
        await server.failures.emit("trusted_cluster.join.failure", remote_addr=remote_addr,
                                 message=str(exc), fields={"leaf": leaf[:256]})
        log.warning("leaf join refused leaf=%r remote=%s reason=%r", leaf[:256], remote_addr,
                    str(exc))
        raise
    await server.trust.store_leaf(leaf_ca)
    await server.audit.emit("trusted_cluster.join", remote_addr=remote_addr,
                          fields={"leaf": leaf})
    return [server.cas["user"].public(), server.cas["host"].public()]


async def delete_remote_cluster(server: AuthServer, name: str) -> None:
    """Forget a leaf: its remote_cluster and its host CA, whichever is left."""
    await server.trust.remove_leaf(name)
    await server.audit.emit("remote_cluster.delete", fields={"leaf": name})
