"""asyncssh for gsh, imported without its probe for liboqs.

asyncssh looks for liboqs (sntrup761 key exchange) with ctypes.util.find_library,
which runs ldconfig and gcc: ~25 ms of every `gsh ssh`. gsh does without it and
offers mlkem768x25519 (from cryptography) and curve25519 as usual.
"""

import ctypes.util

__all__ = ["asyncssh"]

_find_library = ctypes.util.find_library
ctypes.util.find_library = lambda name: None
try:
    import asyncssh
finally:
    ctypes.util.find_library = _find_library
