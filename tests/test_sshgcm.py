"""The GCM shim patch: byte for byte what asyncssh's own methods send and accept."""

from __future__ import annotations

import os

import pytest
from asyncssh.crypto.cipher import GCMCipher
from asyncssh.encryption import GCMEncryption

from gatehouse._sys import sshgcm

ORIGINAL_ENCRYPT = GCMCipher.encrypt_and_sign
ORIGINAL_DECRYPT = GCMEncryption.decrypt_packet


def _ends(name: str, count: int) -> list[GCMEncryption]:
    """``count`` fresh ends of one direction of a connection (same key and IV)."""
    key, iv = os.urandom(16 if "128" in name else 32), os.urandom(12)
    return [GCMEncryption.new(name, key, iv) for _ in range(count)]


def _split(sent: bytes) -> tuple[bytes, bytes, bytes]:
    """As asyncssh's reader hands a packet over: first block, the rest, the tag."""
    return sent[:16], sent[16:-16], sent[-16:]


@pytest.mark.parametrize("name", ["aes128-gcm", "aes256-gcm"])
def test_patched_packets_match_asyncssh_and_decrypt_both_ways(name: str) -> None:
    sshgcm.install()
    ours, theirs, receiver, their_receiver = _ends(name, 4)
    for seq, size in enumerate([16, 4096, 256 << 10, 32]):
        header, body = size.to_bytes(4, "big"), os.urandom(size)
        sent = b"".join(ours.encrypt_packet(seq, header, body))
        packet, mac = ORIGINAL_ENCRYPT(theirs._cipher, header, body)
        assert sent == packet + mac
        first, rest, tag = _split(sent)
        assert receiver.decrypt_packet(seq, first, rest, 4, tag) == body
        assert ORIGINAL_DECRYPT(their_receiver, seq, first, rest, 4, tag) == body


def test_a_tampered_packet_is_refused_and_the_sequence_goes_on() -> None:
    sshgcm.install()
    sender, receiver = _ends("aes128-gcm", 2)
    sent = bytearray(b"".join(sender.encrypt_packet(0, (64).to_bytes(4, "big"),
                                                    os.urandom(64))))
    sent[20] ^= 1
    first, rest, tag = _split(bytes(sent))
    assert receiver.decrypt_packet(0, first, rest, 4, tag) is None
    body = os.urandom(48)
    again = b"".join(sender.encrypt_packet(1, (48).to_bytes(4, "big"), body))
    first, rest, tag = _split(again)
    assert receiver.decrypt_packet(1, first, rest, 4, tag) == body
