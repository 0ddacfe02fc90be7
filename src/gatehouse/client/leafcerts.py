"""Leaf-local logins, the client's side: `gsh login LEAF` asks the leaf (through the root
proxy and the leaf's tunnel) to certify the profile's key with its own user CA, for the
logins of the leaf's roles (auth/leaflogin.py). The certificates are kept per leaf in
the profile, next to the root's (keys/leaves/LEAF/), and go when the profile's key does.
"""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from gatehouse.client.profile import Profile
from gatehouse.errors import BadParameter, GatehouseError
from gatehouse.pki import sshcert
from gatehouse.pki.keystore import write_private

if TYPE_CHECKING:  # `gsh ssh` reads certificates only: the API client loads on obtain()
    from gatehouse.wire.authapi import Certs

__all__ = ["leaf_cert_file", "missing_hint", "obtain", "principals", "ssh_cert_line"]


def _directory(profile: Profile, leaf: str) -> Path:
    if leaf not in profile.leaves:  # a name from the root's list, so a safe path part
        raise BadParameter(f"{leaf} is not a leaf cluster of {profile.cluster}")
    return profile.identity.directory / "leaves" / leaf


def leaf_cert_file(profile: Profile, leaf: str) -> Path:
    """Where the leaf's own SSH certificate for the profile's key is kept."""
    return _directory(profile, leaf) / "key-cert.pub"


async def obtain(profile: Profile, leaf: str) -> Certs:
    """The leaf's certificates for the profile's key, saved in the profile (those of an
    earlier `gsh login LEAF` removed first: a refusal leaves none behind)."""
    from gatehouse.client.login import api_for
    from gatehouse.wire.authapi import LeafLoginRequest

    where = _directory(profile, leaf)
    shutil.rmtree(where, ignore_errors=True)
    public_key = sshcert.public_key_line(profile.identity.key().public_key())
    try:
        async with api_for(profile, leaf) as api:
            certs = await api.leaf_login(LeafLoginRequest(public_key=public_key))
    except GatehouseError as exc:
        raise type(exc)(f"{leaf} did not certify you for its own logins: {exc}") from exc
    where.mkdir(parents=True, exist_ok=True, mode=0o700)
    write_private(where / "tls.crt", certs.tls_cert)
    write_private(where / "key-cert.pub", certs.ssh_cert.strip() + "\n")
    return certs


def principals(certs: Certs) -> tuple[str, ...]:
    """The logins a leaf certified (its SSH certificate's principals)."""
    return sshcert.decode(sshcert.from_openssh_line(certs.ssh_cert)).principals


def _fresh_leaf_cert(profile: Profile, cluster: str) -> str:
    """The leaf's own certificate line for ``cluster``, if one is kept and unexpired."""
    if cluster == profile.cluster or cluster not in profile.leaves:
        return ""
    try:
        line = leaf_cert_file(profile, cluster).read_text().strip()
        cert = sshcert.decode(sshcert.from_openssh_line(line))
    except (OSError, BadParameter):
        return ""
    return line if cert.valid_before > dt.datetime.now(dt.UTC).timestamp() else ""


def ssh_cert_line(profile: Profile, cluster: str) -> str:
    """The SSH certificate to show ``cluster``'s nodes: the leaf's own from `gsh login
    LEAF` while it is valid, else the root's."""
    return _fresh_leaf_cert(profile, cluster) or profile.identity.ssh_cert_line()


def missing_hint(profile: Profile, cluster: str) -> str:
    """What to add to a refusal by a leaf's node when no leaf certificate was shown."""
    if cluster == profile.cluster or _fresh_leaf_cert(profile, cluster):
        return ""
    return f"; for a login of {cluster}'s own roles, run: gsh login {cluster}"
