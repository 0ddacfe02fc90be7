"""Fuzzing the dial handshake (wire/dial.py), the first line a proxy reads from a client:
requests and replies round-trip; any other line is BadParameter alone (what the proxy
turns into a refusal), and an overlong line is refused before it is parsed."""

from __future__ import annotations

import contextlib
import json

from hypothesis import example, given
from hypothesis import strategies as st

from gatehouse.errors import BadParameter
from gatehouse.wire.dial import MAX_LINE, DialReply, DialRequest
from tests.fuzz.budget import fuzz, peak_bytes

# Every code point, lone surrogates too: JSON escapes them and reads them back.
_text = st.text(st.characters(exclude_categories=()), max_size=40)


@fuzz(200)
@given(_text.filter(bool), _text, st.integers(0, 65535))
def test_requests_round_trip(target: str, cluster: str, port: int) -> None:
    request = DialRequest(target=target, cluster=cluster, port=port)
    assert DialRequest.decode(request.encode()) == request


@fuzz(100)
@given(_text)
def test_replies_round_trip(error: str) -> None:
    assert DialReply.decode(DialReply(error=error).encode()) == DialReply(error=error)


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | _text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_text, inner, max_size=3),
    max_leaves=8)
_lines = st.one_of(
    st.binary(max_size=100),
    _json.map(lambda v: json.dumps(v).encode() + b"\n"),
    st.fixed_dictionaries({"target": _json}, optional={"cluster": _json, "port": _json,
                                                        "ok": _json, "error": _json}).map(
        lambda v: json.dumps(v).encode() + b"\n"),
    st.integers(1, MAX_LINE).map(lambda n: b"[" * n + b"\n"),
)


@fuzz(300)
@given(_lines)
@example(b"[" * 4000 + b"\n")
@example(b'{"target":"n","port":1' + b"0" * 5000 + b"}\n")
def test_any_line_is_a_request_or_bad_parameter(line: bytes) -> None:
    with contextlib.suppress(BadParameter):
        DialRequest.decode(line)
    with contextlib.suppress(BadParameter):
        DialReply.decode(line)


def test_an_overlong_request_is_refused_before_it_is_parsed() -> None:
    line = b'{"target":"' + b"n" * (16 << 20) + b'"}\n'
    assert peak_bytes(lambda: DialRequest.decode(line), BadParameter) < 64 * 1024
