"""asyncssh's TCP forwarders, fixed: nothing a target sends early is lost, and a
forward closes once both directions have ended.

Two faults in asyncssh 2.24's ``SSHForwarder`` (used for direct-tcpip on the node,
the node's listeners for ``ssh -R`` and the client's ``-R`` targets):
- ``forward_connection`` connects to the target before the channel's side exists.
  What the target sends (an SSH or SMTP banner) and its EOF, when they arrive in
  between, are buffered on the target's side and never passed on: the client gets
  nothing and waits for ever.
- Each side, on its EOF, keeps the forward open unless the other side ended first,
  and closes nothing itself when it is the second: the target's socket closes
  itself that way, but when the target ended first the channel is left open once
  the client ends too, and ``ssh -W`` never exits.
``install()`` mends both in place: a side that gets its transport passes on what its
peer holds, and the second EOF closes the forward (RFC 4254 §5.3: a party closes a
channel it will neither send nor receive on). tests/test_sshforward.py holds them.
"""

from __future__ import annotations

import asyncio

from asyncssh.forward import SSHForwarder

__all__ = ["install"]

_connection_made = SSHForwarder.connection_made
_eof_received = SSHForwarder.eof_received


def _connected(self: SSHForwarder, transport: asyncio.BaseTransport) -> None:
    _connection_made(self, transport)
    peer = self._peer
    if peer is None:
        return
    if peer._inpbuf:
        self.write(peer._inpbuf)
        peer._inpbuf = b""
    if peer.was_eof_received():
        self.write_eof()


def _ended(self: SSHForwarder) -> bool:
    keep_open = _eof_received(self)
    if not keep_open:
        self.close()  # flushes what either transport still holds, then closes both
    return keep_open


def install() -> None:
    SSHForwarder.connection_made = _connected  # type: ignore[method-assign]
    SSHForwarder.eof_received = _ended  # type: ignore[method-assign]
