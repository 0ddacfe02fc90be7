"""Leaf-local logins: a leaf certifies a root user itself, for its own roles' logins.

A root-signed certificate can carry only the logins the root knows; a leaf role's
``logins: [deploy]`` could never be used. Here the leaf takes the root user's
certificate (relayed by its proxy: the root proxy over the tunnel, or its own), maps
the root roles with the trust's role map, and signs SSH and X.509 certificates with
its own user CA for the logins of the leaf roles. The certificate records its origin
(``origin@gatehouse``: the root; key id: the root user) and the root roles, so that
nodes and the auth resolve it through the trust at every use (rolemap.holder_cluster):
disabling the trust refuses it as it refuses the root's own certificate. Its lifetime
never exceeds the root certificate's nor the leaf roles' max_session_ttl.

``decide`` is the decision (pure, deny by default); ``leaf_login`` gathers its
inputs, audits the outcome (``leaf.login``, ``leaf.login.failure``) and signs.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping
from dataclasses import dataclass

from gatehouse import rbac, rolemap
from gatehouse.auth.identify import Caller, root_trust
from gatehouse.auth.issuer import IssuedCerts, issue_user, parse_public_key
from gatehouse.auth.server import AuthServer
from gatehouse.errors import AccessDenied
from gatehouse.pki import sshcert, x509
from gatehouse.types.role import Role
from gatehouse.types.template import UserTraits

__all__ = ["LeafGrant", "decide", "leaf_login"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LeafGrant:
    identity: x509.Identity  # what the leaf certifies (origin: the root)
    roles: tuple[str, ...]  # the leaf roles the role map gives (for the record)
    ttl: dt.timedelta
    port_forwarding: bool


def decide(ident: x509.Identity, root: rolemap.Trust | None, local_cluster: str,
           roles: Mapping[str, Role], now: dt.datetime) -> LeafGrant:
    """What this leaf (``local_cluster``, whose roles are ``roles``) certifies for the
    holder of the root-signed certificate ``ident`` (already verified against the user
    CA of its cluster, whose trust here is ``root``) at ``now``; AccessDenied why not."""
    if ident.kind != "user" or not ident.name:
        raise AccessDenied("a leaf-local login needs a root cluster user's certificate")
    if ident.origin:
        raise AccessDenied("a leaf-local login needs the root's certificate, not one "
                           "this cluster issued")
    if ident.cluster == local_cluster:
        raise AccessDenied(f"user {ident.name} is a user of this cluster: `gsh login` "
                           "gives its certificate")
    if ident.expires is None or ident.expires <= now:
        raise AccessDenied("the root certificate has expired: run `gsh login` again")
    names = rolemap.resolve_roles(
        user=ident.name, user_cluster=ident.cluster, cert_roles=ident.roles,
        local_cluster=local_cluster, user_exists=False, root=root, existing=roles)
    leaf_roles = [roles[name] for name in names if name in roles]
    if not leaf_roles:
        raise AccessDenied(f"user {ident.name} has no roles known on this cluster")
    traits = UserTraits.of(ident.traits, sso=bool(ident.connector))
    logins = rbac.allowed_logins(leaf_roles, traits)
    if not logins:
        raise AccessDenied(f"the roles {', '.join(names)} give user {ident.name} no logins "
                           "on this cluster")
    ttl = min(ident.expires - now, rbac.max_session_ttl(leaf_roles))
    certified = x509.Identity(
        kind="user", name=ident.name, cluster=local_cluster, roles=ident.roles,
        logins=tuple(logins), traits=ident.traits, route_to_cluster=local_cluster,
        origin=ident.cluster, connector=ident.connector)  # an SSO user's traits stay external
    return LeafGrant(identity=certified, roles=tuple(names), ttl=ttl,
                     port_forwarding=rbac.allows_port_forwarding(leaf_roles))


async def leaf_login(server: AuthServer, caller: Caller | None, public_key: str) -> IssuedCerts:
    """Certificates of this cluster's user CA for ``public_key``, for the root user
    ``caller`` (audited either way, with the reason of a refusal)."""
    key = parse_public_key(public_key)
    who = caller.identity if caller is not None else x509.Identity(kind="host", name="",
                                                                  cluster="")
    remote = caller.remote_addr if caller is not None else ""
    now = server.clock.now()
    try:
        if caller is None or caller.in_process:
            raise AccessDenied("a leaf-local login needs a root cluster user's certificate")
        root = await root_trust(server, who.cluster) if who.cluster != server.cluster else None
        roles = {r.metadata.name: r for r in await server.roles.list()}
        grant = decide(who, root, server.cluster, roles, now)
    except AccessDenied as exc:
        log.warning("leaf login denied user=%s cluster=%s reason=%r", who.name,
                    who.cluster, str(exc))
        await server.audit.emit("leaf.login.failure", user=who.name, remote_addr=remote,
                                message=str(exc), fields={"origin": who.cluster})
        raise
    certs = issue_user(server.cas["user"], key, grant.identity, now=now, ttl=grant.ttl,
                       port_forwarding=grant.port_forwarding)
    await server.audit.emit(
        "leaf.login", user=who.name, remote_addr=remote,
        correlation_id=sshcert.correlation_id(who.name, certs.serial),
        fields={"origin": who.cluster, "roles": list(grant.roles),
                "logins": list(grant.identity.logins), "expires": certs.expires.isoformat()})
    return certs
