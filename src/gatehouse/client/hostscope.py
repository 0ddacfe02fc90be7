"""Which cluster a host name belongs to, and so whose host CA may vouch for it (pure).

A name belongs to the cluster whose name is its longest suffix: with clusters
`sso.example.com` and `example.com`, `node1.sso.example.com` is the first's and
`node1.example.com` the second's. Each CA vouches for its own cluster's names and
no others: OpenSSH learns it from the known_hosts patterns written here (a
negated pattern, ``!*.sso.example.com``, excludes the longer cluster's names:
sshd(8), "SSH_KNOWN_HOSTS FILE FORMAT"), and gsh checks it with the same rule.
Names are compared without case, as OpenSSH compares them.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["cluster_of", "known_hosts_patterns"]


def _within(name: str, cluster: str) -> bool:
    return name.lower().endswith("." + cluster.lower())


def cluster_of(host: str, clusters: Iterable[str]) -> str | None:
    """The cluster among ``clusters`` whose name is ``host``'s longest suffix, if any."""
    owners = [c for c in clusters if _within(host, c)]
    return max(owners, key=len) if owners else None


def known_hosts_patterns(cluster: str, clusters: Iterable[str]) -> str:
    """The known_hosts host patterns matching exactly the names ``cluster_of`` gives to
    ``cluster``: ``*.CLUSTER``, less every longer cluster's names beneath it."""
    nested = sorted({c for c in clusters if _within(c, cluster)})
    return ",".join([f"*.{cluster}", *(f"!*.{c}" for c in nested)])
