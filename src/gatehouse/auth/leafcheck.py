"""What a joining leaf sends, checked before the root stores any of it (pure).

A leaf's name becomes a backend key, a URL path part, a known_hosts scope and
a remote_cluster's name; its CA enters every trust snapshot the root hands
out. So the name must be a resource name (the same pattern every resource
has), and the CA must be what a Gatehouse cluster makes: a host CA for that
very name, as an ssh-ed25519 line and a self-signed X.509 CA certificate.
"""

from __future__ import annotations

from cryptography import x509 as cx509
from cryptography.exceptions import InvalidSignature
from cryptography.x509.oid import NameOID

from gatehouse.auth.issuer import parse_public_key
from gatehouse.errors import AccessDenied, BadParameter
from gatehouse.pki import x509
from gatehouse.types.resource import NAME_RULE, is_name
from gatehouse.wire.trust import PublicCA

__all__ = ["check_leaf_ca"]

def check_leaf_ca(leaf_ca: PublicCA, root: str) -> None:
    """Raise BadParameter (malformed) or AccessDenied (the root's own name) unless
    ``leaf_ca`` is a well-formed host CA of a validly named cluster other than ``root``."""
    name = leaf_ca.cluster
    if not is_name(name):
        raise BadParameter(f"leaf name {name[:80]!r} is not a valid cluster name: {NAME_RULE}")
    if name == root:
        raise AccessDenied(f"a leaf cannot share the root's name {root!r}")
    if leaf_ca.type != "host":
        raise BadParameter("a leaf must send its host CA")
    parse_public_key(leaf_ca.ssh)
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
