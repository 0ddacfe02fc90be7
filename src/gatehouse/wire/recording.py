"""Session recordings: a pure binary format, and its conversions for playback.

A recording is a header then timed frames, designed for cheap appends and for
surviving a writer killed mid-write::

    magic b"GHREC\\x00\\x00\\x01" | header length u32 | header (UTF-8 JSON object)
    frame*: type u8 | t_ms u64 | length u32 | payload

All integers are big-endian. ``t_ms`` is milliseconds since ``start``, never
decreasing. Frame types: ``o`` (output bytes as the user saw them) and ``r``
(resize, payload cols u32 | rows u32). A file cut anywhere after its header
decodes to every complete frame before the cut, marked ``truncated``; so does
a tail that is not a valid frame (a zero-filled tail after a power loss). A
missing or corrupt header is not a recording: BadParameter.
"""

from __future__ import annotations

import base64
import codecs
import datetime as dt
import json
import mmap
import struct
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from gatehouse.errors import BadParameter

__all__ = [
    "MAGIC",
    "Frame",
    "Recording",
    "RecordingMeta",
    "RecordingWriter",
    "Summarizer",
    "Summary",
    "check_session_id",
    "decode",
    "decode_header",
    "is_session_id",
    "output_bytes",
    "summarize",
    "to_asciicast",
    "to_json",
]

MAGIC = b"GHREC\x00\x00\x01"
VERSION = 1
MAX_HEADER = 1 << 20
_HEAD_LEN = struct.Struct(">I")
_FRAME = struct.Struct(">BQI")  # type, t_ms, payload length
_SIZE = struct.Struct(">II")  # cols, rows
_U32 = (1 << 32) - 1
_OUTPUT, _RESIZE = ord("o"), ord("r")
_MAX_T = 1e15  # seconds; keeps t_ms well inside u64, and inf finite


def is_session_id(text: object) -> bool:
    """True for a canonical (lowercase, hyphenated) UUID; False for paths and the rest."""
    if not isinstance(text, str) or len(text) != 36:
        return False
    try:
        return str(uuid.UUID(text)) == text
    except ValueError:
        return False


def check_session_id(text: str) -> str:
    """The id if it is a canonical UUID; BadParameter (naming it) otherwise."""
    if is_session_id(text):
        return text
    raise BadParameter(f"{text[:80]!r} is not a session id (expected a UUID)")


@dataclass(frozen=True)
class RecordingMeta:
    """The header: whose session this was, where, and its terminal at the start."""

    session_id: str
    cluster: str
    user: str
    login: str
    node: str
    start: dt.datetime
    cols: int = 0  # 0x0 without a PTY
    rows: int = 0
    command: str = ""  # "" for a shell
    version: int = VERSION

    def __post_init__(self) -> None:
        if not is_session_id(self.session_id):
            raise BadParameter(f"recording session_id {self.session_id!r}: expected a UUID")
        for name in ("cluster", "user", "login", "node", "command"):
            if not isinstance(getattr(self, name), str):
                raise BadParameter(f"recording {name} {getattr(self, name)!r}: expected a string")
        for name in ("cols", "rows"):
            value = getattr(self, name)
            if type(value) is not int or not 0 <= value <= _U32:
                raise BadParameter(f"recording {name} {value!r}: expected 0..{_U32}")
        if not isinstance(self.start, dt.datetime) or self.start.utcoffset() is None:
            raise BadParameter(f"recording start {self.start!r}: expected an aware datetime")
        try:  # kept in UTC, as the header writes it: 0001-01-01T00:00+01:00 has no UTC
            object.__setattr__(self, "start", self.start.astimezone(dt.UTC))
        except OverflowError:
            raise BadParameter(f"recording start {self.start.isoformat()}: out of range in "
                               "UTC") from None
        if type(self.version) is not int or self.version != VERSION:
            raise BadParameter(f"recording version {self.version!r}: expected {VERSION}")

    def to_dict(self) -> dict[str, Any]:
        """The header's JSON object (start as ISO 8601 UTC)."""
        out = asdict(self)
        out["start"] = self.start.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")
        return out

    @classmethod
    def from_dict(cls, obj: object) -> RecordingMeta:
        """Parse a header object; unknown keys are ignored (newer writers may add some)."""
        if not isinstance(obj, dict):
            raise BadParameter("recording header: expected a JSON object")
        fields: dict[str, Any] = {}
        for name in ("version", "session_id", "cluster", "user", "login", "node", "start",
                     "cols", "rows", "command"):
            if name not in obj:
                raise BadParameter(f"recording header: missing field {name!r}")
            fields[name] = obj[name]
        start = fields.pop("start")
        try:
            return cls(start=dt.datetime.fromisoformat(start), **fields)
        except (TypeError, ValueError):
            raise BadParameter(f"recording header: start {start!r} is not ISO 8601") from None


@dataclass(frozen=True)
class Frame:
    """``o``: output ``data`` as the user saw it; ``r``: the terminal resized to cols x rows."""

    type: Literal["o", "r"]
    t: float  # seconds since start
    data: bytes = b""
    cols: int = 0
    rows: int = 0


@dataclass(frozen=True)
class Recording:
    meta: RecordingMeta
    frames: list[Frame] = field(default_factory=list)
    truncated: bool = False  # the data ended inside a frame or in bytes that are not one

    @property
    def duration(self) -> float:
        """Seconds from start to the last frame."""
        return self.frames[-1].t if self.frames else 0.0


@dataclass(frozen=True)
class Summary:
    """A recording's header, duration and whether it is truncated (see ``summarize``)."""

    meta: RecordingMeta
    duration: float
    truncated: bool


class RecordingWriter:
    """Encodes a recording piece by piece; the caller appends the bytes to its file.

    Times are seconds since start, rounded to milliseconds and clamped so that
    they never decrease.
    """

    def __init__(self) -> None:
        self._last_ms = 0

    @staticmethod
    def header_bytes(meta: RecordingMeta) -> bytes:
        header = json.dumps(meta.to_dict(), separators=(",", ":")).encode()
        if len(header) > MAX_HEADER:
            raise BadParameter(f"recording header of {len(header)} bytes: limit {MAX_HEADER}")
        return MAGIC + _HEAD_LEN.pack(len(header)) + header

    def frame_output(self, t: float, data: bytes) -> bytes:
        return self.output_header(t, len(data)) + data

    def output_header(self, t: float, length: int) -> bytes:
        """An output frame's bytes before its ``length`` bytes of payload."""
        if length > _U32:
            raise BadParameter(f"output frame of {length} bytes: limit {_U32}")
        return _FRAME.pack(_OUTPUT, self._ms(t), length)

    def frame_resize(self, t: float, cols: int, rows: int) -> bytes:
        if not (0 <= cols <= _U32 and 0 <= rows <= _U32):
            raise BadParameter(f"resize to {cols}x{rows}: expected 0..{_U32}")
        return _FRAME.pack(_RESIZE, self._ms(t), _SIZE.size) + _SIZE.pack(cols, rows)

    def _ms(self, t: float) -> int:
        if t > 0:  # False for NaN too
            self._last_ms = max(self._last_ms, round(min(t, _MAX_T) * 1000))
        return self._last_ms


def decode_header(data: bytes) -> tuple[RecordingMeta, int]:
    """The header and the offset of the first frame; BadParameter if it is incomplete or bad."""
    if data[:len(MAGIC)] != MAGIC:
        raise BadParameter("not a Gatehouse recording (bad magic)")
    start = len(MAGIC) + _HEAD_LEN.size
    if len(data) < start:
        raise BadParameter("recording header is cut short")
    (length,) = _HEAD_LEN.unpack_from(data, len(MAGIC))
    if length > MAX_HEADER:
        raise BadParameter(f"recording header of {length} bytes: limit {MAX_HEADER}")
    if len(data) < start + length:
        raise BadParameter("recording header is cut short")
    try:
        obj = json.loads(data[start:start + length])
    except (ValueError, RecursionError) as exc:  # bad UTF-8 or JSON, absurd nesting
        raise BadParameter(f"recording header is not JSON: {exc}") from None
    return RecordingMeta.from_dict(obj), start + length


def _frames(data: bytes | mmap.mmap, pos: int) -> Iterator[tuple[int, int, int, int]]:
    """(type, t_ms, payload offset, payload length) of each complete frame from ``pos``
    on, stopping at the first that is cut short or not a frame this version writes."""
    end = len(data)
    while end - pos >= _FRAME.size:
        kind, ms, length = _FRAME.unpack_from(data, pos)
        body = pos + _FRAME.size
        if body + length > end or not (kind == _OUTPUT or
                                        (kind == _RESIZE and length == _SIZE.size)):
            return
        yield kind, ms, body, length
        pos = body + length


def decode(data: bytes) -> Recording:
    """Every complete frame; a damaged tail ends the frames and sets ``truncated``."""
    meta, pos = decode_header(data)
    view = memoryview(data)
    frames: list[Frame] = []
    for kind, ms, body, length in _frames(data, pos):
        if kind == _OUTPUT:
            frames.append(Frame("o", ms / 1000, bytes(view[body:body + length])))
        else:
            cols, rows = _SIZE.unpack_from(data, body)
            frames.append(Frame("r", ms / 1000, cols=cols, rows=rows))
        pos = body + length
    return Recording(meta, frames, truncated=pos < len(data))


def summarize(data: bytes | mmap.mmap) -> Summary:
    """What ``decode`` tells of a recording but its frames, without copying them: for
    recordings too large to hold in memory (``data`` may be an mmap of the file)."""
    summarizer = Summarizer()
    summarizer.feed(memoryview(data))
    return summarizer.result()


class Summarizer:
    """``summarize`` over a recording fed in pieces, in order (e.g. as it is read for an
    upload): one pass, holding no more than the file's header and a frame header."""

    def __init__(self) -> None:
        self._head = bytearray()  # the file's header, until it is whole
        self._meta: RecordingMeta | None = None
        self._carry = bytearray()  # a frame header cut by the end of a piece
        self._skip = 0  # bytes of the current frame's payload still to come
        self._frame_ms = 0  # the current frame's time
        self._size = 0  # bytes fed
        self._end = 0  # where the last complete frame ends
        self._ms = 0  # the last complete frame's time
        self._stopped = False  # past the frames: a damaged tail, ignored

    def feed(self, piece: bytes | memoryview) -> None:
        """The next bytes of the file; BadParameter as soon as its header is bad."""
        view = memoryview(piece).cast("B")
        self._size += len(view)
        if self._meta is None:
            view = self._feed_head(view)
            if self._meta is None:
                return
        at = self._size - len(view)  # where view[0] is in the file
        while view and not self._stopped:
            if self._skip:
                step = min(self._skip, len(view))
                self._skip -= step
                view, at = view[step:], at + step
                if not self._skip:
                    self._end, self._ms = at, self._frame_ms
                continue
            if self._carry or len(view) < _FRAME.size:
                step = min(_FRAME.size - len(self._carry), len(view))
                self._carry += view[:step]
                view, at = view[step:], at + step
                if len(self._carry) < _FRAME.size:
                    return
                header, self._carry = bytes(self._carry), bytearray()
                self._start_frame(header, at)
                continue
            self._start_frame(view, at + _FRAME.size)
            view, at = view[_FRAME.size:], at + _FRAME.size

    def _start_frame(self, data: bytes | memoryview, payload_at: int) -> None:
        """The frame header at the start of ``data``; a frame this version does not write
        ends the frames."""
        kind, ms, length = _FRAME.unpack_from(data)
        if not (kind == _OUTPUT or (kind == _RESIZE and length == _SIZE.size)):
            self._stopped = True
            return
        self._skip, self._frame_ms = length, ms
        if not length:
            self._end, self._ms = payload_at, ms

    def _feed_head(self, view: memoryview) -> memoryview:
        """Gather the file's header (its fixed part, then the JSON that announces); what
        is left of ``view`` after it."""
        fixed = len(MAGIC) + _HEAD_LEN.size
        if len(self._head) < fixed:
            step = fixed - len(self._head)
            self._head += view[:step]
            view = view[step:]
            if len(self._head) < fixed:
                return view
            if (self._head[:len(MAGIC)] != MAGIC
                    or _HEAD_LEN.unpack_from(self._head, len(MAGIC))[0] > MAX_HEADER):
                decode_header(bytes(self._head))  # raises: bad magic, or too large a header
        need = fixed + _HEAD_LEN.unpack_from(self._head, len(MAGIC))[0]
        step = need - len(self._head)
        self._head += view[:step]
        if len(self._head) == need:
            self._meta, self._end = decode_header(bytes(self._head))
        return view[step:]

    @property
    def meta(self) -> RecordingMeta:
        """The header; BadParameter if it is not all fed yet (or bad)."""
        if self._meta is None:
            self._meta, self._end = decode_header(bytes(self._head))
        return self._meta

    def result(self) -> Summary:
        """The summary of what was fed; BadParameter if its header is not whole and good."""
        return Summary(self.meta, self._ms / 1000, truncated=self._end < self._size)


def output_bytes(rec: Recording) -> bytes:
    """The recorded output, concatenated: what ``gsh play`` writes without a terminal."""
    return b"".join(f.data for f in rec.frames if f.type == "o")


def to_json(rec: Recording) -> dict[str, Any]:
    """The header and frames as JSON-ready values (output as base64)."""
    frames: list[dict[str, Any]] = []
    for f in rec.frames:
        if f.type == "o":
            frames.append({"t": f.t, "type": "o", "data": base64.b64encode(f.data).decode()})
        else:
            frames.append({"t": f.t, "type": "r", "cols": f.cols, "rows": f.rows})
    return {"header": rec.meta.to_dict(), "truncated": rec.truncated, "frames": frames}


def to_asciicast(rec: Recording) -> str:
    """asciicast v2 (asciinema's format): a header line, then one JSON event per line.

    Output is decoded as UTF-8 incrementally across frames, so a character
    split between two frames arrives whole in the later event.
    """
    meta = rec.meta
    header: dict[str, Any] = {
        "version": 2,
        "width": meta.cols or 80,
        "height": meta.rows or 24,
        "timestamp": int(meta.start.timestamp()),
        "title": f"{meta.user} as {meta.login}@{meta.node} ({meta.cluster})",
        "env": {},
    }
    if meta.command:
        header["command"] = meta.command
    lines = [json.dumps(header)]
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    t = 0.0
    for f in rec.frames:
        t = max(t, f.t)
        if f.type == "o":
            text = decoder.decode(f.data)
            if text:
                lines.append(json.dumps([t, "o", text]))
        else:
            lines.append(json.dumps([t, "r", f"{f.cols}x{f.rows}"]))
    rest = decoder.decode(b"", final=True)
    if rest:
        lines.append(json.dumps([t, "o", rest]))
    return "\n".join(lines) + "\n"
