"""The recording format: round trips, damaged files, and the playback conversions."""

from __future__ import annotations

import base64
import datetime as dt
import json
import mmap
import uuid
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gatehouse.errors import BadParameter
from gatehouse.wire.recording import (
    MAGIC,
    Frame,
    Recording,
    RecordingMeta,
    RecordingWriter,
    decode,
    decode_header,
    is_session_id,
    output_bytes,
    summarize,
    to_asciicast,
    to_json,
)

START = dt.datetime(2026, 3, 1, 12, 0, 0, 250000, tzinfo=dt.UTC)


def make_meta(**changes: Any) -> RecordingMeta:
    fields: dict[str, Any] = {
        "session_id": str(uuid.uuid4()), "cluster": "us-east-1a", "user": "alice",
        "login": "deploy", "node": "node1", "start": START, "cols": 80, "rows": 24,
        "command": "",
    }
    return RecordingMeta(**{**fields, **changes})


def encode(meta: RecordingMeta, frames: list[Frame]) -> bytes:
    writer = RecordingWriter()
    out = [writer.header_bytes(meta)]
    for f in frames:
        if f.type == "o":
            out.append(writer.frame_output(f.t, f.data))
        else:
            out.append(writer.frame_resize(f.t, f.cols, f.rows))
    return b"".join(out)


def sample() -> tuple[RecordingMeta, list[Frame]]:
    frames: list[Frame] = [
        Frame("o", 0.0, b"$ "),
        Frame("o", 0.5, b"ls\r\n"),
        Frame("r", 1.25, cols=120, rows=40),
        Frame("o", 2.0, b"caf\xc3"),
        Frame("o", 2.001, b"\xa9\r\n"),
    ]
    return make_meta(), frames


# -- round trips ------------------------------------------------------------------

_texts = st.text(max_size=40)
_metas = st.builds(
    make_meta,
    cluster=_texts, user=_texts, login=_texts, node=_texts, command=_texts,
    cols=st.integers(0, 2**32 - 1), rows=st.integers(0, 2**32 - 1),
    start=st.datetimes(timezones=st.just(dt.UTC)),
    session_id=st.uuids().map(str),
)
_steps = st.lists(
    st.tuples(st.integers(0, 10**7),
              st.one_of(st.binary(max_size=300),
                        st.tuples(st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1)))),
    max_size=30,
)


def frames_from(steps: list[tuple[int, bytes | tuple[int, int]]]) -> list[Frame]:
    frames: list[Frame] = []
    ms = 0
    for delta, what in steps:
        ms += delta
        if isinstance(what, bytes):
            frames.append(Frame("o", ms / 1000, what))
        else:
            frames.append(Frame("r", ms / 1000, cols=what[0], rows=what[1]))
    return frames


@settings(max_examples=150, deadline=None)
@given(meta=_metas, steps=_steps)
def test_header_and_frames_round_trip(
    meta: RecordingMeta, steps: list[tuple[int, bytes | tuple[int, int]]]
) -> None:
    frames = frames_from(steps)
    rec = decode(encode(meta, frames))
    assert rec == Recording(meta, frames, truncated=False)
    assert output_bytes(rec) == b"".join(f.data for f in frames if f.type == "o")


def test_writer_never_lets_time_go_backwards() -> None:
    meta = make_meta()
    writer = RecordingWriter()
    data = (writer.header_bytes(meta) + writer.frame_output(2.0, b"a")
            + writer.frame_output(1.0, b"b") + writer.frame_resize(-5.0, 1, 2)
            + writer.frame_output(float("nan"), b"c") + writer.frame_output(2.0004, b"d")
            + writer.frame_output(float("inf"), b"e"))
    assert [f.t for f in decode(data).frames] == [2.0, 2.0, 2.0, 2.0, 2.0, 1e15]


def test_start_is_iso8601_utc_in_the_header() -> None:
    paris = dt.timezone(dt.timedelta(hours=1))
    meta = make_meta(start=dt.datetime(2026, 3, 1, 13, 0, tzinfo=paris))
    assert meta.to_dict()["start"] == "2026-03-01T12:00:00Z"
    assert decode(encode(meta, [])).meta.start == START.replace(microsecond=0)


# -- damaged files ------------------------------------------------------------------


def test_truncation_at_every_offset_keeps_the_complete_prefix() -> None:
    meta, frames = sample()
    data = encode(meta, frames)
    _, first = decode_header(data)
    boundaries = [first]
    for f in frames:
        boundaries.append(boundaries[-1] + 13 + (len(f.data) if f.type == "o" else 8))
    assert boundaries[-1] == len(data)
    for cut in range(len(data) + 1):
        if cut < first:
            with pytest.raises(BadParameter):
                decode(data[:cut])
            continue
        rec = decode(data[:cut])
        complete = sum(1 for b in boundaries[1:] if b <= cut)
        assert rec.meta == meta
        assert rec.frames == frames[:complete]
        assert rec.truncated == (cut not in boundaries)


def test_summary_agrees_with_decode_at_every_cut(tmp_path: Path) -> None:
    meta, frames = sample()
    data = encode(meta, frames) + b"r" + b"\0" * 20
    _, first = decode_header(data)
    for cut in range(first, len(data) + 1):
        rec = decode(data[:cut])
        summary = summarize(data[:cut])
        assert (summary.meta, summary.duration, summary.truncated) == \
            (rec.meta, rec.duration, rec.truncated)
    path = tmp_path / "r.rec"
    path.write_bytes(data)
    with path.open("rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
        assert summarize(mapped) == summarize(data)
    with pytest.raises(BadParameter):
        summarize(data[:first - 1])


@pytest.mark.parametrize("tail", [b"\0" * 64, b"x" + b"\0" * 12, b"r" + b"\0" * 8 + b"\0\0\0\3abc"])
def test_a_tail_that_is_not_a_frame_ends_the_frames(tail: bytes) -> None:
    meta, frames = sample()
    rec = decode(encode(meta, frames) + tail)
    assert rec.frames == frames
    assert rec.truncated


def _with_header(obj: object) -> bytes:
    raw = json.dumps(obj).encode()
    return MAGIC + len(raw).to_bytes(4, "big") + raw


@pytest.mark.parametrize("data", [
    b"",
    b"GHREC",
    b"NOTAREC!" + bytes(100),
    MAGIC + (1 << 30).to_bytes(4, "big") + b"{}",
    MAGIC + (5).to_bytes(4, "big") + b"{not}",
    MAGIC + (2).to_bytes(4, "big") + b"\xff\xfe",
    MAGIC + (1000).to_bytes(4, "big") + b"[" * 1000,
    _with_header([1, 2]),
    _with_header({"version": 1}),
    _with_header({**make_meta().to_dict(), "version": 2}),
    _with_header({**make_meta().to_dict(), "version": True}),
    _with_header({**make_meta().to_dict(), "session_id": "../../etc/passwd"}),
    _with_header({**make_meta().to_dict(), "start": "yesterday"}),
    _with_header({**make_meta().to_dict(), "start": "2026-03-01T12:00:00"}),  # no zone
    _with_header({**make_meta().to_dict(), "cols": -1}),
    _with_header({**make_meta().to_dict(), "rows": True}),
    _with_header({**make_meta().to_dict(), "user": None}),
])
def test_a_corrupt_header_is_bad_parameter(data: bytes) -> None:
    with pytest.raises(BadParameter):
        decode(data)


def test_unknown_header_fields_are_ignored() -> None:
    meta = make_meta()
    rec = decode(_with_header({**meta.to_dict(), "term": "xterm"}))
    assert rec.meta == meta and rec.frames == [] and not rec.truncated


# -- conversions ------------------------------------------------------------------


def check_asciicast_v2(text: str) -> list[list[Any]]:
    """The documented asciicast v2 shape; the events."""
    assert text.endswith("\n")
    lines = text[:-1].split("\n")
    header = json.loads(lines[0])
    assert header["version"] == 2
    assert isinstance(header["width"], int) and header["width"] > 0
    assert isinstance(header["height"], int) and header["height"] > 0
    assert isinstance(header.get("timestamp", 0), int)
    assert isinstance(header.get("env", {}), dict)
    events = [json.loads(line) for line in lines[1:]]
    last = 0.0
    for event in events:
        assert isinstance(event, list) and len(event) == 3
        t, kind, data = event
        assert isinstance(t, float | int) and t >= last
        assert kind in ("o", "r") and isinstance(data, str)
        if kind == "r":
            cols, rows = data.split("x")
            assert cols.isdigit() and rows.isdigit()
        last = t
    return events


def test_asciicast_v2_header_and_events() -> None:
    meta, frames = sample()
    text = to_asciicast(decode(encode(meta, frames)))
    header = json.loads(text.split("\n", 1)[0])
    assert (header["width"], header["height"]) == (80, 24)
    assert header["timestamp"] == int(START.timestamp())
    assert check_asciicast_v2(text) == [
        [0.0, "o", "$ "], [0.5, "o", "ls\r\n"], [1.25, "r", "120x40"],
        [2.0, "o", "caf"], [2.001, "o", "\u00e9\r\n"],
    ]


def test_asciicast_keeps_characters_split_across_frames() -> None:
    euro, snake = "\u20ac".encode(), "\U0001f40d".encode()
    frames: list[Frame] = [Frame("o", 0.1, euro[:1]), Frame("r", 0.2, cols=100, rows=30),
                           Frame("o", 0.3, euro[1:] + snake[:3]), Frame("o", 0.4, snake[3:]),
                           Frame("o", 0.5, b"bad \xff end \xe2\x82")]
    events = check_asciicast_v2(to_asciicast(decode(encode(make_meta(), frames))))
    text = "".join(data for _, kind, data in events if kind == "o")
    assert text == "\u20ac\U0001f40dbad \ufffd end \ufffd"
    assert [0.2, "r", "100x30"] in events


def test_asciicast_without_a_pty_still_has_a_size() -> None:
    meta = make_meta(cols=0, rows=0, command="uptime")
    text = to_asciicast(decode(encode(meta, [Frame("o", 0.0, b"up\n")])))
    header = json.loads(text.split("\n", 1)[0])
    assert header["command"] == "uptime"
    assert check_asciicast_v2(text) == [[0.0, "o", "up\n"]]


def test_asciinema_reads_the_export(tmp_path: Path) -> None:
    asciicast = pytest.importorskip("asciinema.asciicast")
    meta, frames = sample()
    path = tmp_path / "s.cast"
    path.write_text(to_asciicast(decode(encode(meta, frames))), encoding="utf-8")
    with asciicast.open_from_url(str(path)) as cast:
        assert cast.v2_header["width"] == 80
        text = "".join(e[2] for e in cast.events("o"))
    assert text.encode() == output_bytes(decode(encode(meta, frames)))


def test_json_export() -> None:
    meta, frames = sample()
    out = to_json(decode(encode(meta, frames)[:-1]))
    json.dumps(out)  # serializable as it is
    assert out["header"] == meta.to_dict() and out["truncated"]
    assert out["frames"][2] == {"t": 1.25, "type": "r", "cols": 120, "rows": 40}
    assert [base64.b64decode(f["data"]) for f in out["frames"] if f["type"] == "o"] == [
        b"$ ", b"ls\r\n", b"caf\xc3"]


def test_duration_is_the_last_frame_time() -> None:
    meta, frames = sample()
    assert decode(encode(meta, frames)).duration == 2.001
    assert decode(encode(meta, [])).duration == 0.0


# -- session ids --------------------------------------------------------------------


def test_is_session_id_accepts_canonical_uuids() -> None:
    for _ in range(20):
        assert is_session_id(str(uuid.uuid4()))
    assert is_session_id(str(uuid.uuid1()))


# A fixed session id in parameters: their ids must be the same in every xdist worker.
A_UUID = "6f1c2a3e-8b4d-4e5f-9a0b-1c2d3e4f5a6b"


@pytest.mark.parametrize("text", [
    "", "abc", "../../etc/passwd", "../" + A_UUID, A_UUID + "/..",
    A_UUID.upper(), A_UUID.replace("-", ""),
    "{" + A_UUID + "}", "urn:uuid:" + A_UUID, " " + A_UUID,
    A_UUID[:-1] + "\n", "\u0661" * 8 + A_UUID[8:], None, 42,
])
def test_is_session_id_rejects_the_rest(text: object) -> None:
    assert not is_session_id(text)
    with pytest.raises(BadParameter):
        make_meta(session_id=text)
