"""AES-GCM for asyncssh's packets without its per-packet copies (same bytes on the wire).

asyncssh 2.24 builds a new AESGCM object for every packet, then splits the
cipher's output into ciphertext and tag only for its caller to join them again
(``send_packet`` sends ``packet + mac``), and on receipt joins ciphertext and tag
after joining the packet's two parts. At the 256 KiB packets of a busy stream each
of those is a copy of the whole packet. ``install()`` replaces the two methods of
asyncssh's GCM shim with ones that keep one AESGCM per key and return the packet
whole, with an empty tag (``packet + b""`` is ``packet``, not a copy); the
checks (tag verification, IV sequence, RFC 5647) are cryptography's and asyncssh's
own, unchanged. tests/test_sshgcm.py holds them to the originals byte for byte.
"""

from __future__ import annotations

from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

__all__ = ["install"]


def _aead(cipher: Any) -> AESGCM:
    """The cipher's AESGCM, made once for its key (a re-key makes a new cipher)."""
    cached: tuple[bytes, AESGCM] | None = getattr(cipher, "_gatehouse_aead", None)
    if cached is None or cached[0] is not cipher._key:
        cached = cipher._gatehouse_aead = (cipher._key, AESGCM(cipher._key))
    return cached[1]


def _encrypt_and_sign(self: Any, header: bytes, data: bytes) -> tuple[bytes, bytes]:
    sealed = _aead(self).encrypt(self._iv, data, header)
    self._update_iv()
    return header + sealed, b""


def _decrypt_packet(self: Any, seq: int, first: bytes, rest: bytes, header_len: int,
                    mac: bytes) -> bytes | None:
    cipher = self._cipher
    sealed = b"".join((memoryview(first)[header_len:], rest, mac))
    try:
        plain: bytes | None = _aead(cipher).decrypt(cipher._iv, sealed, first[:header_len])
    except InvalidTag:
        plain = None
    cipher._update_iv()
    return plain


def install() -> None:
    """Patch asyncssh's GCM shim (idempotent); call it where asyncssh is imported."""
    from asyncssh.crypto.cipher import GCMCipher
    from asyncssh.encryption import GCMEncryption

    setattr(GCMCipher, "encrypt_and_sign", _encrypt_and_sign)  # noqa: B010 (a patch)
    setattr(GCMEncryption, "decrypt_packet", _decrypt_packet)  # noqa: B010
