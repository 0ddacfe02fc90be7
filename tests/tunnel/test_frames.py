"""Tunnel framing: round trips, split delivery, and protocol errors."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gatehouse.tunnel.frames import (
    HEADER,
    MAX_PAYLOAD,
    Frame,
    FrameDecoder,
    FrameType,
    ProtocolError,
    encode,
    window_payload,
)

_stream_frames = st.sampled_from(
    [t for t in FrameType if t not in (FrameType.PING, FrameType.PONG, FrameType.GOAWAY,
                                       FrameType.WINDOW)])


@settings(max_examples=100, deadline=None)
@given(
    frames=st.lists(st.tuples(_stream_frames, st.integers(1, 2**32 - 1),
                              st.binary(max_size=300)), max_size=20),
    cut=st.integers(1, 50),
)
def test_frames_survive_any_split(frames: list[tuple[FrameType, int, bytes]], cut: int) -> None:
    frames = [(t, s, p or b"x" if t == FrameType.DATA else p) for t, s, p in frames]
    wire = b"".join(encode(t, s, p) for t, s, p in frames)
    decoder = FrameDecoder()
    out: list[Frame] = []
    for i in range(0, len(wire), cut):
        out += decoder.feed(wire[i:i + cut])
    assert out == [Frame(t, s, p) for t, s, p in frames]


def test_connection_frames_only_on_stream_zero() -> None:
    assert FrameDecoder().feed(encode(FrameType.PING, 0, b"12345678")) == [
        Frame(FrameType.PING, 0, b"12345678")]
    with pytest.raises(ProtocolError, match="PING frame on stream 5"):
        FrameDecoder().feed(HEADER.pack(FrameType.PING, 5, 0))
    with pytest.raises(ProtocolError, match="DATA frame on stream 0"):
        FrameDecoder().feed(HEADER.pack(FrameType.DATA, 0, 0))


def test_oversized_unknown_and_bad_window_frames_are_errors() -> None:
    with pytest.raises(ProtocolError, match="exceeds"):
        FrameDecoder().feed(HEADER.pack(FrameType.DATA, 1, MAX_PAYLOAD + 1))
    with pytest.raises(ProtocolError, match="unknown frame type"):
        FrameDecoder().feed(HEADER.pack(99, 1, 0))
    with pytest.raises(ProtocolError, match="WINDOW"):
        FrameDecoder().feed(encode(FrameType.WINDOW, 1, b"\x00"))
    with pytest.raises(ProtocolError, match="empty DATA frame on stream 3"):
        FrameDecoder().feed(encode(FrameType.DATA, 3))
    assert FrameDecoder().feed(encode(FrameType.WINDOW, 1, window_payload(7))) == [
        Frame(FrameType.WINDOW, 1, b"\x00\x00\x00\x07")]


def test_encode_refuses_oversized_payload() -> None:
    with pytest.raises(ValueError):
        encode(FrameType.DATA, 1, bytes(MAX_PAYLOAD + 1))
