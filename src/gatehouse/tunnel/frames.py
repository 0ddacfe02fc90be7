"""Reverse-tunnel multiplexer framing (pure: bytes in, frames out).

One TLS connection carries many streams. Every frame is a 9-byte header
(type u8, stream id u32, payload length u32, all big-endian) and a payload.
The dialing side opens odd stream ids, the accepting side even ones, so both
may open streams without colliding. Stream 0 is the connection itself (PING,
PONG, GOAWAY).

Flow control is per stream, credit based: a sender may have at most the
receiver's window of DATA payload unacknowledged; the receiver returns credit
with WINDOW frames as its consumer takes the data. A peer that sends more than
its credit, or breaks the framing, is a protocol error and loses the connection.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass

__all__ = [
    "HEADER",
    "INITIAL_WINDOW",
    "MAX_PAYLOAD",
    "Frame",
    "FrameDecoder",
    "FrameType",
    "ProtocolError",
    "encode",
    "window_payload",
]

HEADER = struct.Struct(">BII")
MAX_PAYLOAD = 256 * 1024
INITIAL_WINDOW = 4 * 1024 * 1024


class ProtocolError(Exception):
    """The peer broke the tunnel protocol (the connection is then closed)."""


class FrameType(enum.IntEnum):
    OPEN = 1  # payload: JSON describing what the stream is for
    ACCEPT = 2  # the far side took the stream; payload: empty, or JSON about it
    REFUSE = 3  # payload: UTF-8 reason; the stream is gone
    DATA = 4
    WINDOW = 5  # payload: u32 credit increment
    EOF = 6  # the sender will send no more DATA on this stream
    RESET = 7  # payload: UTF-8 reason; the stream is gone both ways
    PING = 8  # payload: 8 opaque bytes, echoed in PONG
    PONG = 9
    GOAWAY = 10  # payload: UTF-8 reason; the connection is closing


_CONNECTION_FRAMES = frozenset({FrameType.PING, FrameType.PONG, FrameType.GOAWAY})


@dataclass(frozen=True)
class Frame:
    type: FrameType
    stream: int
    payload: bytes = b""


def encode(ftype: FrameType, stream: int, payload: bytes | memoryview = b"") -> bytes:
    if len(payload) > MAX_PAYLOAD:
        raise ValueError(f"frame payload {len(payload)} exceeds {MAX_PAYLOAD}")
    return HEADER.pack(ftype, stream, len(payload)) + payload


def window_payload(increment: int) -> bytes:
    return struct.pack(">I", increment)


class FrameDecoder:
    """Feed bytes in, take whole frames out; raises ProtocolError on bad framing."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[Frame]:
        # Payloads are copied once, out of ``data`` itself when no partial frame is
        # pending (a stream's bytes pass through here at full rate).
        src: bytes | bytearray = data
        if self._buf:
            self._buf += data
            src = self._buf
        frames: list[Frame] = []
        offset = 0
        with memoryview(src) as view:
            while len(view) - offset >= HEADER.size:
                raw_type, stream, length = HEADER.unpack_from(view, offset)
                if length > MAX_PAYLOAD:
                    raise ProtocolError(f"frame of {length} bytes exceeds {MAX_PAYLOAD}")
                end = offset + HEADER.size + length
                if len(view) < end:
                    break
                try:
                    ftype = FrameType(raw_type)
                except ValueError:
                    raise ProtocolError(f"unknown frame type {raw_type}") from None
                if (stream == 0) != (ftype in _CONNECTION_FRAMES):
                    raise ProtocolError(f"{ftype.name} frame on stream {stream}")
                if ftype == FrameType.WINDOW and length != 4:
                    raise ProtocolError("WINDOW frame payload must be 4 bytes")
                if ftype == FrameType.DATA and not length:  # EOF's look, and free to queue
                    raise ProtocolError(f"empty DATA frame on stream {stream}")
                frames.append(Frame(ftype, stream, bytes(view[offset + HEADER.size:end])))
                offset = end
            if src is data:
                self._buf += view[offset:]
        if src is self._buf and offset:
            del self._buf[:offset]
        return frames
