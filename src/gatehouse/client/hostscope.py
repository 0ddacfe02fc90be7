"""Which cluster a host name belongs to, and so whose host CA may vouch for it (pure).

A name belongs to the cluster whose name is its longest suffix: with clusters
`sso.example.com` and `example.com`, `node1.sso.example.com` is the first's and
`node1.example.com` the second's. Each CA vouches for its own cluster's names and
no others: OpenSSH learns it from the known_hosts patterns written here (a
negated pattern, ``!*.sso.example.com``, excludes the longer cluster's names:
sshd(8), "SSH_KNOWN_HOSTS FILE FORMAT"), and gsh checks it with the same rule.
Names are compared without case, as OpenSSH compares them.

What the server says goes into known_hosts only through ``known_hosts_text``: a
cluster name must be a name (no pattern characters, spaces or newlines) and a host
CA exactly one Ed25519 key, written re-serialised, so no second entry rides along.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from gatehouse.errors import BadParameter
from gatehouse.pki import sshcert

__all__ = ["cluster_of", "known_hosts_patterns", "known_hosts_text"]


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


def known_hosts_text(cas: Mapping[str, str]) -> str:
    """known_hosts for ``cas`` (cluster name -> its host CA's ``ssh-ed25519`` line): one
    ``@cert-authority`` line per cluster, for its own names only. BadParameter, naming
    the cluster, for a name that is no cluster name or a line that is not one key."""
    # Here, not at the top: gatehouse.types loads pydantic, which the path to a node
    # does without (tests/cli/test_lean_start.py); saving a profile is login's business.
    from gatehouse.types.resource import NAME_RULE, is_name

    for name in cas:
        if not is_name(name):
            raise BadParameter(f"the server sent {name[:80]!r}, which is not a valid "
                               f"cluster name: {NAME_RULE}")
    lines = []
    for name, line in cas.items():
        key = sshcert.parse_public_key(line, f"the host CA of cluster {name!r}")
        lines.append(f"@cert-authority {known_hosts_patterns(name, cas)} "
                     f"{sshcert.public_key_line(key)}\n")
    return "".join(lines)
