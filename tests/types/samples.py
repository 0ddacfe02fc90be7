"""Key and certificate text with the right shape for resource tests (not real keys)."""

from __future__ import annotations

import base64

PEM = "-----BEGIN CERTIFICATE-----\nTUlJQm9n\nQUFB\n-----END CERTIFICATE-----\n"


def ssh_key_line(key_type: str = "ssh-ed25519") -> str:
    """An OpenSSH public key line whose blob names ``key_type`` (an all-zero key)."""
    name = key_type.encode()
    blob = len(name).to_bytes(4, "big") + name + (32).to_bytes(4, "big") + bytes(32)
    return f"{key_type} {base64.b64encode(blob).decode()} ca@test"
