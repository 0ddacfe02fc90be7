"""While the root is down: a leaf's node through the leaf's own proxy.

A leaf that publishes its proxy (``proxy_service.public_addr``) told the root, which
told gsh at login (`gsh clusters` refreshes it), with the leaf's host CA that signs the
proxy's TLS certificate. When the root proxy does not answer, `gsh ssh --cluster=LEAF`
dials that proxy instead with the same root-issued certificate, which the leaf checks
as it checks any relayed one (its role map, the root's cluster labels, the trust
enabled). A leaf with no public address cannot be reached this way, and gsh says so.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable, Mapping, Sequence

from gatehouse._sys.hostport import split_host_port
from gatehouse.client.dialer import Fallback
from gatehouse.client.profile import Profile
from gatehouse.pki import tls
from gatehouse.wire.names import ALPN_SSH

__all__ = ["fallback_plan", "leaf_fallback"]


def fallback_plan(cluster: str, leaf_proxies: Mapping[str, Sequence[str]]
                  ) -> tuple[str, str]:
    """(the leaf proxy's address, the line gsh says) for leaf ``cluster`` when the root
    does not answer; the address is "" when there is none to fall back to."""
    published = leaf_proxies.get(cluster)
    if not published or len(published) != 2 or not published[0] or not published[1]:
        return "", (f"cannot fall back to cluster {cluster}'s own proxy: it published no "
                    "proxy address (proxy_service.public_addr) when you last logged in")
    return published[0], (f"falling back to cluster {cluster}'s own proxy at "
                          f"{published[0]} (the root does not answer)")


def leaf_fallback(profile: Profile, cluster: str, announce: Callable[[str], None]
                  ) -> Fallback | None:
    """What the dialer does for ``cluster``'s nodes when the profile's proxy does not
    answer: the leaf's proxy, verified by the leaf's host CA, with the profile's
    certificate; or nothing, and why; None for the profile's own cluster."""
    if cluster == profile.cluster:
        return None
    addr, notice = fallback_plan(cluster, profile.leaf_proxies)

    def context() -> ssl.SSLContext:
        ident = profile.identity
        return tls.client_context(profile.leaf_proxies[cluster][1],
                                  cert_file=ident.tls_cert_file, key_file=ident.key_pem_file,
                                  alpn=[ALPN_SSH])

    return Fallback(proxy=addr, server_name=split_host_port(addr)[0] if addr else "",
                    notice=notice, ssl_context=context, announce=announce)
