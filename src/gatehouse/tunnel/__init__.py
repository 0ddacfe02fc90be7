"""Reverse tunnels: framing, multiplexer, agent (dials out) and server (accepts)."""
