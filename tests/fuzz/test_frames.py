"""Fuzzing the tunnel's frame decoder (tunnel/frames.py): frames survive any split; any
other bytes end in ProtocolError alone (what the session catches), and a frame's
announced length is never buffered past MAX_PAYLOAD."""

from __future__ import annotations

from hypothesis import given
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
from tests.fuzz.budget import fuzz, peak_bytes

_CONNECTION = {FrameType.PING, FrameType.PONG, FrameType.GOAWAY}


@st.composite
def frames(draw: st.DrawFn) -> Frame:
    ftype = draw(st.sampled_from(FrameType))
    stream = 0 if ftype in _CONNECTION else draw(st.integers(1, 2**32 - 1))
    if ftype == FrameType.WINDOW:
        payload = window_payload(draw(st.integers(0, 2**32 - 1)))
    else:  # a DATA frame carries at least a byte (an empty one is a protocol error)
        least = 1 if ftype == FrameType.DATA else 0
        payload = draw(st.binary(min_size=least, max_size=64)
                       | st.integers(least, MAX_PAYLOAD).map(bytes))
    return Frame(ftype, stream, payload)


def feed_in_pieces(data: bytes, cuts: list[int]) -> list[Frame]:
    decoder = FrameDecoder()
    out: list[Frame] = []
    start = 0
    for cut in sorted(c % (len(data) + 1) for c in cuts):
        out += decoder.feed(data[start:cut])
        start = max(start, cut)
    return out + decoder.feed(data[start:])


@fuzz(100)
@given(st.lists(frames(), max_size=6), st.lists(st.integers(0), max_size=8))
def test_frames_round_trip_in_any_pieces(sent: list[Frame], cuts: list[int]) -> None:
    wire = b"".join(encode(f.type, f.stream, f.payload) for f in sent)
    assert feed_in_pieces(wire, cuts) == sent


@fuzz(300)
@given(st.lists(st.binary(max_size=40) | frames().map(
    lambda f: encode(f.type, f.stream, f.payload)[:HEADER.size + 8]), max_size=8))
def test_random_bytes_fail_with_protocol_error_alone(chunks: list[bytes]) -> None:
    decoder = FrameDecoder()
    try:
        for chunk in chunks:
            for frame in decoder.feed(chunk):
                assert len(frame.payload) <= MAX_PAYLOAD
                assert (frame.stream == 0) == (frame.type in _CONNECTION)
    except ProtocolError:
        pass


def test_an_announced_length_is_refused_before_it_is_buffered() -> None:
    decoder = FrameDecoder()
    huge = HEADER.pack(FrameType.DATA, 1, 2**32 - 1)
    assert peak_bytes(lambda: decoder.feed(huge), ProtocolError) < 16 * 1024


def test_a_frame_trickled_in_holds_at_most_its_own_size() -> None:
    decoder = FrameDecoder()
    header = HEADER.pack(FrameType.DATA, 1, MAX_PAYLOAD)
    chunk = bytes(4096)

    def trickle() -> None:
        assert decoder.feed(header) == []
        for _ in range(MAX_PAYLOAD // len(chunk) - 1):
            assert decoder.feed(chunk) == []
        assert len(decoder.feed(chunk + header[:3])) == 1

    # The pending frame, the frame handed out and the chunk's copies: a few payloads.
    assert peak_bytes(trickle) < 4 * MAX_PAYLOAD
