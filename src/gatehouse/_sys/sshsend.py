"""asyncssh's sending side with fewer writes and no CBC-era padding packets.

Measured on a node streaming to OpenSSH's client (32 KiB packets, the most it takes):
asyncssh 2.24 writes each packet to its transport at once, and before every packet
after the key exchange it sends an empty ``SSH_MSG_IGNORE``. A 256 KiB read of the
command's output became 16 packets, 16 ``send`` system calls and 16 ``getrandom``
calls for their padding; the node's loop spent over a third of its time in them.

- :class:`CorkedTransport`: what a connection writes in one turn of the event loop
  leaves in one ``writelines`` (one ``writev`` on a socket) at the start of the next.
  ``write_eof``, ``close`` and ``abort`` send what waits first, so nothing is
  reordered, and the delay is one turn of the loop. (What waits when the transport
  closes by itself, the peer gone, is dropped, as a closed socket's buffer would be.)
- :class:`LeanSends` (a base for asyncssh connection classes) corks its transport and
  skips the empty IGNORE. That empty ``SSH_MSG_IGNORE`` is RFC 4251 §9.3.1's
  countermeasure to the chosen-plaintext attack on CBC mode (it makes the next
  packet's IV unpredictable). With an AEAD cipher (AES-GCM, RFC 5647; chacha20-poly1305)
  every packet has its own nonce and there is nothing to make unpredictable; OpenSSH
  sends none. It is still sent under any other cipher.
"""

from __future__ import annotations

import asyncio
from typing import Any, cast

from asyncssh.connection import SSHConnection
from asyncssh.encryption import ChachaEncryption, GCMEncryption

__all__ = ["CorkedTransport", "LeanSends"]

_EMPTY_IGNORE = (2, (b"\0\0\0\0",))  # MSG_IGNORE with an empty string (RFC 4253 §11.2)


class CorkedTransport(asyncio.Transport):
    """``inner`` with its writes of one loop turn gathered into one ``writelines``."""

    def __init__(self, inner: asyncio.Transport) -> None:
        super().__init__()
        self._inner = inner
        self._loop = asyncio.get_running_loop()
        self._pending: list[bytes] = []
        self._size = 0

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not data:
            return
        if not isinstance(data, bytes):
            data = bytes(data)  # the caller may reuse its buffer once write() returns
        if not self._pending:
            self._loop.call_soon(self._flush)
        self._pending.append(data)
        self._size += len(data)

    def writelines(self, list_of_data: Any) -> None:
        for data in list_of_data:
            self.write(data)

    def _flush(self) -> None:
        if self._pending:
            pending, self._pending, self._size = self._pending, [], 0
            if not self._inner.is_closing():
                self._inner.writelines(pending)

    def write_eof(self) -> None:
        self._flush()
        self._inner.write_eof()

    def can_write_eof(self) -> bool:
        return self._inner.can_write_eof()

    def close(self) -> None:
        self._flush()
        self._inner.close()

    def abort(self) -> None:
        self._flush()
        self._inner.abort()

    def is_closing(self) -> bool:
        return self._inner.is_closing()

    def pause_reading(self) -> None:
        self._inner.pause_reading()

    def resume_reading(self) -> None:
        self._inner.resume_reading()

    def is_reading(self) -> bool:
        return self._inner.is_reading()

    def get_write_buffer_size(self) -> int:
        return self._size + self._inner.get_write_buffer_size()

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return self._inner.get_write_buffer_limits()

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self._inner.set_write_buffer_limits(high, low)

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._inner.get_protocol()

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._inner.set_protocol(protocol)

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._inner.get_extra_info(name, default)


class LeanSends(SSHConnection):
    """Put before asyncssh's client or server connection class: corked writes, and no
    empty IGNORE before each packet under an AEAD cipher (see the module's text)."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # a cast, not an isinstance check: uvloop's transports are not its subclasses
        super().connection_made(CorkedTransport(cast(asyncio.Transport, transport)))

    def send_packet(self, pkttype: int, *args: bytes, handler: Any = None) -> None:
        if (pkttype, args) == _EMPTY_IGNORE and isinstance(
                self._send_encryption, GCMEncryption | ChachaEncryption):
            return
        super().send_packet(pkttype, *args, handler=handler)
