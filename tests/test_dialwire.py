"""Tests for gatehouse.wire.dial: the one-line request and reply that open a proxied stream."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gatehouse.errors import BadParameter
from gatehouse.wire.dial import MAX_LINE, DialReply, DialRequest


def line(obj: object) -> bytes:
    return json.dumps(obj).encode() + b"\n"


# --- DialRequest --------------------------------------------------------------------------


def test_request_defaults_round_trip() -> None:
    encoded = DialRequest("node1").encode()
    assert encoded.endswith(b"\n")
    assert encoded.count(b"\n") == 1
    assert DialRequest.decode(encoded) == DialRequest(target="node1", cluster="", port=0)


def test_request_round_trip_with_cluster_and_port() -> None:
    req = DialRequest(target="10.0.0.7:3022", cluster="us-east-1a", port=2222)
    assert DialRequest.decode(req.encode()) == req


def test_request_decode_fills_defaults() -> None:
    assert DialRequest.decode(b'{"target":"node1"}\n') == DialRequest("node1")


@given(
    target=st.text(min_size=1, max_size=200),
    cluster=st.text(max_size=100),
    port=st.integers(min_value=0, max_value=65535),
)
def test_request_round_trips(target: str, cluster: str, port: int) -> None:
    req = DialRequest(target=target, cluster=cluster, port=port)
    encoded = req.encode()
    assert encoded.count(b"\n") == 1  # a newline in a name is escaped, never a line break
    assert DialRequest.decode(encoded) == req


def test_request_of_exactly_max_line_bytes_is_accepted() -> None:
    overhead = len(DialRequest("").encode())
    req = DialRequest("n" * (MAX_LINE - overhead))
    assert len(req.encode()) == MAX_LINE
    assert DialRequest.decode(req.encode()) == req


def test_oversize_request_is_rejected() -> None:
    overhead = len(DialRequest("").encode())
    encoded = DialRequest("n" * (MAX_LINE - overhead + 1)).encode()
    assert len(encoded) == MAX_LINE + 1
    with pytest.raises(BadParameter, match="at most 4096 bytes"):
        DialRequest.decode(encoded)


def test_request_without_newline_is_rejected() -> None:
    with pytest.raises(BadParameter, match="one line"):
        DialRequest.decode(DialRequest("node1").encode().rstrip(b"\n"))


@pytest.mark.parametrize(
    "raw",
    [b"\n", b"not json\n", b'{"target":\n', b"\xff\xfe\n", b"[]\n", b'"node1"\n', b"42\n",
     b"null\n", b'{"cluster":"c"}\n'],
)
def test_malformed_request_is_rejected(raw: bytes) -> None:
    with pytest.raises(BadParameter, match="malformed dial request"):
        DialRequest.decode(raw)


@pytest.mark.parametrize(
    "obj",
    [{"target": ""}, {"target": None}, {"target": 7}, {"target": ["n"]},
     {"target": "n", "cluster": None}, {"target": "n", "cluster": 1}],
)
def test_request_needs_a_target_and_a_cluster_name(obj: object) -> None:
    with pytest.raises(BadParameter, match="needs a target"):
        DialRequest.decode(line(obj))


@pytest.mark.parametrize("port", [-1, 65536, 1 << 70, "22", 22.0, None, [22]])
def test_request_with_a_bad_port_is_rejected(port: object) -> None:
    with pytest.raises(BadParameter, match="bad port"):
        DialRequest.decode(line({"target": "n", "port": port}))


@pytest.mark.parametrize("port", [True, False])
def test_request_with_a_boolean_port_is_rejected(port: bool) -> None:
    with pytest.raises(BadParameter, match="bad port"):
        DialRequest.decode(line({"target": "n", "port": port}))


@pytest.mark.parametrize("raw", [b"[" * 1500 + b"\n", b'{"a":' * 800 + b"\n"])
def test_deeply_nested_request_is_rejected(raw: bytes) -> None:
    assert len(raw) <= MAX_LINE
    with pytest.raises(BadParameter):
        DialRequest.decode(raw)


@given(st.binary(max_size=MAX_LINE + 10))
def test_request_decode_of_garbage_raises_only_bad_parameter(raw: bytes) -> None:
    try:
        req = DialRequest.decode(raw)
    except BadParameter:
        return
    assert req.target


# --- DialReply ----------------------------------------------------------------------------


def test_ok_reply_round_trips() -> None:
    reply = DialReply()
    assert reply.ok
    encoded = reply.encode()
    assert encoded.endswith(b"\n")
    assert json.loads(encoded) == {"ok": True, "error": "", "host_id": ""}
    assert DialReply.decode(encoded) == reply
    assert DialReply.decode(encoded).ok


def test_an_ok_reply_names_the_host_dialed() -> None:
    reply = DialReply(host_id="6f1c2a9e-hid")
    assert DialReply.decode(reply.encode()) == reply


def test_a_reply_of_an_older_proxy_names_no_host() -> None:
    assert DialReply.decode(b'{"ok": true, "error": ""}\n') == DialReply(host_id="")


def test_a_refusal_names_no_host() -> None:
    assert "host_id" not in json.loads(DialReply(error="no").encode())


def test_error_reply_round_trips() -> None:
    reply = DialReply(error="node db1 is not registered in cluster sso.example.com")
    assert not reply.ok
    assert json.loads(reply.encode())["ok"] is False
    decoded = DialReply.decode(reply.encode())
    assert decoded == reply
    assert not decoded.ok


def test_refusal_without_a_message_still_says_something() -> None:
    reply = DialReply.decode(b'{"ok": false}\n')
    assert not reply.ok
    assert reply.error == "proxy refused the connection"


def test_an_ok_reply_drops_any_error_text() -> None:
    assert DialReply.decode(b'{"ok": true, "error": "ignored"}\n') == DialReply()


@pytest.mark.parametrize("raw", [b"", b"junk\n", b"[]\n", b'"ok"\n', b'{"error": "x"}\n',
                                 b"\xff\n", b'{"ok": true, "host_id": 7}\n'])
def test_malformed_reply_is_rejected(raw: bytes) -> None:
    with pytest.raises(BadParameter, match="malformed reply from proxy"):
        DialReply.decode(raw)


@given(st.text(max_size=200))
def test_reply_round_trips(error: str) -> None:
    assert DialReply.decode(DialReply(error=error).encode()) == DialReply(error=error)
