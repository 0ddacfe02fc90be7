"""Fuzzing the recording format (wire/recording.py): what the writer writes decodes to
the same header and frames; any other bytes are BadParameter (no header) or a recording
marked truncated; what decodes plays back in every format and summarizes alike whole or
in pieces; and no announced length is allocated before its bytes are there."""

from __future__ import annotations

import datetime as dt
import struct
import uuid

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from gatehouse.errors import BadParameter
from gatehouse.wire.recording import (
    MAGIC,
    Frame,
    RecordingMeta,
    RecordingWriter,
    Summarizer,
    Summary,
    decode,
    summarize,
    to_asciicast,
    to_json,
)
from tests.fuzz.budget import fuzz, peak_bytes

_text = st.text(max_size=8)
_metas = st.builds(
    RecordingMeta, session_id=st.uuids().map(str), cluster=_text, user=_text, login=_text,
    node=_text, command=_text, cols=st.integers(0, 2**32 - 1), rows=st.integers(0, 2**32 - 1),
    start=st.datetimes(min_value=dt.datetime(1, 1, 2), max_value=dt.datetime(9999, 12, 30),
                       timezones=st.timezones() | st.just(dt.UTC)))
_frames = st.lists(st.one_of(
    st.builds(Frame, type=st.just("o"), t=st.integers(0, 10**9).map(lambda ms: ms / 1000),
              data=st.binary(max_size=40)),
    st.builds(Frame, type=st.just("r"), t=st.integers(0, 10**9).map(lambda ms: ms / 1000),
              cols=st.integers(0, 2**32 - 1), rows=st.integers(0, 2**32 - 1))), max_size=6)


def encode(meta: RecordingMeta, frames: list[Frame]) -> bytes:
    writer = RecordingWriter()
    out = [writer.header_bytes(meta)]
    for f in frames:
        out.append(writer.frame_output(f.t, f.data) if f.type == "o"
                   else writer.frame_resize(f.t, f.cols, f.rows))
    return b"".join(out)


def summarize_in_pieces(data: bytes, size: int) -> Summary:
    """summarize(), fed ``size`` bytes at a time (an upload's reads)."""
    summarizer = Summarizer()
    for at in range(0, len(data), size):
        summarizer.feed(data[at:at + size])
    return summarizer.result()


def plays_back(data: bytes) -> None:
    """decode(data), BadParameter alone; what decodes converts, and summarize agrees, fed
    whole or in pieces of any size."""
    try:
        rec = decode(data)
    except BadParameter:
        for size in (1, 7, 13):
            with pytest.raises(BadParameter):
                summarize_in_pieces(data, size)
        return
    to_json(rec)
    to_asciicast(rec)
    for summary in [summarize(data)] + [summarize_in_pieces(data, n) for n in (1, 7, 13)]:
        assert (summary.meta, summary.duration, summary.truncated) == (
            rec.meta, rec.duration, rec.truncated)


@fuzz(150)
@given(_metas, _frames)
def test_recordings_round_trip(meta: RecordingMeta, frames: list[Frame]) -> None:
    data = encode(meta, frames)
    rec = decode(data)
    assert rec.meta == meta and not rec.truncated
    assert rec.frames == sorted(rec.frames, key=lambda f: f.t)
    assert [(f.type, f.data, f.cols, f.rows) for f in rec.frames] == [
        (f.type, f.data, f.cols, f.rows) for f in frames]
    plays_back(data)


_header = st.fixed_dictionaries({
    "version": st.just(1) | st.integers() | st.booleans(),
    "session_id": st.uuids().map(str) | _text, "cluster": _text | st.integers(),
    "user": _text, "login": _text, "node": _text, "command": _text,
    "cols": st.integers(-1, 2**33), "rows": st.integers(0, 5),
    "start": st.sampled_from(["2026-01-01T00:00:00Z", "0001-01-01T00:00:00+01:00",
                              "9999-12-31T23:59:59-01:00", "2026-01-01T00:00:00", "x", ""])})


def test_a_start_with_no_utc_time_is_bad_parameter() -> None:
    with pytest.raises(BadParameter, match="out of range in UTC"):
        RecordingMeta(session_id=str(uuid.UUID(int=0)), cluster="", user="", login="",
                      node="", start=dt.datetime(1, 1, 1, tzinfo=dt.timezone(
                          dt.timedelta(hours=1))))


def _with_header(header: bytes) -> bytes:
    return MAGIC + struct.pack(">I", len(header)) + header


@fuzz(300)
@given(st.one_of(
    st.binary(max_size=80),
    st.binary(max_size=60).map(lambda b: MAGIC + b),
    _header.map(lambda h: _with_header(repr(h).replace("'", '"').replace("True", "true")
                                       .replace("False", "false").encode())),
    st.tuples(_metas, _frames, st.integers(0), st.binary(max_size=12)).map(
        lambda m: (lambda d: d[:m[2] % (len(d) + 1)] + m[3] + d[m[2] % (len(d) + 1):])(
            encode(m[0], m[1]))),
))
@example(_with_header(b'{"version":1,"session_id":"00000000-0000-0000-0000-000000000000",'
                      b'"cluster":"","user":"","login":"","node":"","command":"","cols":0,'
                      b'"rows":0,"start":"0001-01-01T00:00:00+01:00"}'))
def test_any_bytes_are_bad_parameter_or_a_recording(data: bytes) -> None:
    plays_back(data)


def test_announced_lengths_are_not_allocated() -> None:
    meta = RecordingMeta(session_id=str(uuid.uuid4()), cluster="c", user="u", login="l",
                         node="n", start=dt.datetime(2026, 1, 1, tzinfo=dt.UTC))
    header = RecordingWriter.header_bytes(meta)
    huge_header = MAGIC + b"\xff\xff\xff\xff"
    huge_frame = header + struct.pack(">BQI", ord("o"), 0, 2**32 - 1) + b"x"
    assert peak_bytes(lambda: decode(huge_header), BadParameter) < 64 * 1024
    assert peak_bytes(lambda: decode(huge_frame)) < 64 * 1024
    assert decode(huge_frame).truncated
