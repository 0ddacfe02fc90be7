"""asyncssh for gsh, imported without its probes for shared libraries.

At import asyncssh looks for liboqs (sntrup761 key exchange, and ML-KEM where
cryptography lacks it) and nettle (UMAC MACs) with ctypes.util.find_library, which
runs ldconfig and gcc: ~25 ms of every `gsh ssh`. gsh does without both: it
negotiates aes128-gcm or chacha20-poly1305 (no separate MAC) and, with
cryptography 50, mlkem768x25519 or curve25519 for the key exchange. AES-GCM
packets go through gatehouse._sys.sshgcm (fewer copies), and -R targets through
gatehouse._sys.sshforward's mended forwarders.
"""

import ctypes.util

__all__ = ["asyncssh"]

_find_library = ctypes.util.find_library
ctypes.util.find_library = lambda name: None
try:
    import asyncssh
finally:
    ctypes.util.find_library = _find_library

from gatehouse._sys import sshforward, sshgcm  # noqa: E402 after asyncssh, which they patch

sshgcm.install()
sshforward.install()
