"""Certificates and keys: the SSH certificate codec, X.509 identities, join tokens,
identities on disk and TLS contexts (pure, or file I/O only)."""
