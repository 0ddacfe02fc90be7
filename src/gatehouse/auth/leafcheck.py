"""What a joining leaf sends, checked before the root stores any of it (pure).

A leaf's name becomes a backend key, a URL path part, a known_hosts scope and
a remote_cluster's name; its CA enters every trust snapshot the root hands
out. So the name must be a resource name (the same pattern every resource
has), and the CA must be what a Gatehouse cluster makes: a host CA for that
very name, as one canonical ssh-ed25519 line (nothing after the key: it is
written into known_hosts) and a self-signed X.509 CA certificate.
"""

from __future__ import annotations

import re

from cryptography import x509 as cx509
from cryptography.exceptions import InvalidSignature
from cryptography.x509.oid import NameOID

from gatehouse.auth.issuer import parse_public_key
from gatehouse.errors import AccessDenied, BadParameter
from gatehouse.pki import x509
from gatehouse.types.resource import NAME_RULE, is_name
from gatehouse.wire.trust import PublicCA

__all__ = ["check_leaf_ca", "clash_refusal"]

# An ASCII top-level domain is letters only, an internationalized one an A-label
# (RFC 1123 §2.1; ICANN gTLD Applicant Guidebook §2.2.1.3.2).
_TLD_RE = re.compile(r"[a-z]+|xn--[a-z0-9-]+", re.IGNORECASE)


def _nested(a: str, b: str) -> bool:
    """Whether one name is the other's DNS suffix (or both are one name), without case
    as OpenSSH and client/hostscope compare host names."""
    a, b = a.lower(), b.lower()
    return a == b or a.endswith("." + b) or b.endswith("." + a)


def _check_leaf_name(name: str, root: str) -> None:
    """A leaf's name is the host name suffix `gsh config` routes to the leaf
    (``Host *.LEAF``) and scopes its host CA to (``@cert-authority *.LEAF``), and names
    split on the longest cluster suffix (client/hostscope.py). So it must not cover
    names that are not the leaf's: not a single label that could be a top-level domain
    (``com``: every .com host), no empty label, and neither a DNS suffix of the root's
    name (``example.com`` under ``sso.example.com``: all of example.com but the root's
    own names) nor beneath it (``x.sso.example.com`` would take the root's names that
    end so)."""
    if not is_name(name):
        raise BadParameter(f"leaf name {name[:80]!r} is not a valid cluster name: {NAME_RULE}")
    if name.lower() == root.lower():
        raise AccessDenied(f"a leaf cannot share the root's name {root!r}")
    labels = name.split(".")
    if "" in labels:
        raise BadParameter(f"leaf name {name!r} has an empty label: expected DNS labels "
                           "joined by single dots")
    if len(labels) == 1 and _TLD_RE.fullmatch(name):
        raise BadParameter(f"leaf name {name!r} could be a top-level domain, and `gsh "
                           f"config` would send every host under it to the leaf: expected "
                           "several labels, or a label with a digit or a hyphen "
                           "(us-east-1a)")
    if _nested(root, name):
        why = (f"the root's name {root} ends with it" if root.lower().endswith("." + name.lower())
               else f"it ends with the root's name {root}")
        raise BadParameter(f"leaf name {name!r} would cover the root's host names ({why}): "
                           "expected a name that neither ends with the root's nor is a "
                           "suffix of it")


def clash_refusal(name: str, other: str) -> str:
    """Why leaf ``name`` may not join beside the joined leaf ``other`` (services/leafnames
    found the two nested): the host names they share would go to either."""
    if name.lower() == other.lower():
        why = "the same name but for case"
    elif name.lower().endswith("." + other.lower()):
        why = "it ends with that name"
    else:
        why = "that name ends with it"
    return (f"leaf name {name!r} would share host names with the joined leaf {other!r} "
            f"({why}), and `gsh config` would send them to either: expected a name apart "
            f"from every joined leaf's (or remove that leaf first: `gatectl rm rc/{other}`)")


def check_leaf_ca(leaf_ca: PublicCA, root: str) -> None:
    """Raise BadParameter (malformed) or AccessDenied (the root's own name) unless
    ``leaf_ca`` is a well-formed host CA of a validly named cluster apart from ``root``."""
    name = leaf_ca.cluster
    _check_leaf_name(name, root)
    if leaf_ca.type != "host":
        raise BadParameter("a leaf must send its host CA")
    parse_public_key(leaf_ca.ssh, "the leaf's host CA ssh line")
    blocks = x509.pem_blocks(leaf_ca.tls)
    if len(blocks) != 1:
        raise BadParameter(f"the leaf's host CA must be one PEM certificate, not {len(blocks)}")
    cert = x509.load_cert(blocks[0])
    orgs = [str(a.value) for a in cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)]
    try:
        is_ca = cert.extensions.get_extension_for_class(cx509.BasicConstraints).value.ca
    except cx509.ExtensionNotFound:
        is_ca = False
    if not is_ca or x509.ca_type(cert) != "host" or orgs != [name]:
        raise BadParameter(f"the leaf's X.509 CA is not the host CA of cluster {name!r}")
    try:
        cert.verify_directly_issued_by(cert)
    except (ValueError, TypeError, InvalidSignature):
        raise BadParameter("the leaf's X.509 host CA is not a valid self-signed "
                           "certificate") from None
