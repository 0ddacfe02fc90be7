"""The trust a cluster shares: certificate authorities' public parts (pure)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gatehouse.errors import BadParameter

__all__ = ["PublicCA"]


@dataclass(frozen=True)
class PublicCA:
    cluster: str
    type: str
    ssh: str  # "ssh-ed25519 AAAA..."
    tls: str  # PEM

    def to_json(self) -> dict[str, str]:
        return {"cluster": self.cluster, "type": self.type, "ssh": self.ssh, "tls": self.tls}

    @classmethod
    def from_json(cls, raw: Any) -> PublicCA:
        try:
            return cls(str(raw["cluster"]), str(raw["type"]), str(raw["ssh"]), str(raw["tls"]))
        except (KeyError, TypeError) as exc:
            raise BadParameter(f"malformed certificate authority: {exc}") from exc
