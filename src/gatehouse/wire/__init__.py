"""Contracts between processes: ALPN names and headers, the dial handshake, addresses,
the recording format (pure)."""
