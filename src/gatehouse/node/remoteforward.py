"""`ssh -R` on a node: whether a remote forward may listen, and where (pure).

RFC 4254 §7.1: the client asks the node to listen and to send each connection back
as a forwarded-tcpip channel. The node decides as sshd does with its defaults:
only where a role allows port forwarding (the certificate's permit-port-forwarding
is checked by asyncssh as well), on loopback only whatever address was asked for
(sshd_config's ``GatewayPorts no``), and ports below 1024 only for a login whose
uid is 0 (sshd binds as the login; the node binds as itself, so it checks for it).
"""

from __future__ import annotations

__all__ = ["MAX_REMOTE_FORWARDS", "bind_host", "refusal"]

MAX_REMOTE_FORWARDS = 16
"""Remote listeners one connection may hold: each is a socket the node keeps open."""


def refusal(*, allowed: bool, login: str, login_uid: int | None, port: int,
            held: int) -> str | None:
    """Why a remote forward on ``port`` (0: any free port) may not listen, or None."""
    if not allowed:
        return "port forwarding is not allowed by the user's roles"
    if 0 < port < 1024 and login_uid != 0:
        return f"port {port} is privileged: only a login with uid 0 may listen on it, " \
               f"not {login}"
    if held >= MAX_REMOTE_FORWARDS:
        return f"this connection holds {held} remote forwards already, the most allowed"
    return None


def bind_host(requested: str) -> str:
    """The loopback address to listen on for a request to listen on ``requested``."""
    return "::1" if requested.strip("[]") == "::1" else "127.0.0.1"
