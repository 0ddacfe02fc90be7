"""The SFTP audit reader over packets as OpenSSH's sftp and sftp-server send them."""

from __future__ import annotations

import struct

from gatehouse.node.sftpaudit import SFTPAudit, describe


def _string(value: bytes | str) -> bytes:
    raw = value.encode() if isinstance(value, str) else value
    return struct.pack(">I", len(raw)) + raw


def _packet(kind: int, body: bytes) -> bytes:
    return struct.pack(">IB", len(body) + 1, kind) + body


def _id(request_id: int) -> bytes:
    return struct.pack(">I", request_id)


def open_(rid: int, path: str, flags: int) -> bytes:
    return _packet(3, _id(rid) + _string(path) + struct.pack(">II", flags, 0))


def write(rid: int, handle: bytes, offset: int, data: bytes) -> bytes:
    return _packet(6, _id(rid) + _string(handle) + struct.pack(">Q", offset) + _string(data))


def read(rid: int, handle: bytes, offset: int, size: int) -> bytes:
    return _packet(5, _id(rid) + _string(handle) + struct.pack(">QI", offset, size))


def close(rid: int, handle: bytes) -> bytes:
    return _packet(4, _id(rid) + _string(handle))


def status(rid: int, code: int = 0, message: str = "Success") -> bytes:
    return _packet(101, _id(rid) + struct.pack(">I", code) + _string(message) + _string(""))


def handle(rid: int, value: bytes) -> bytes:
    return _packet(102, _id(rid) + _string(value))


def data(rid: int, payload: bytes) -> bytes:
    return _packet(103, _id(rid) + _string(payload))


INIT = _packet(1, struct.pack(">I", 3))
VERSION = _packet(2, struct.pack(">I", 3) + _string("limits@openssh.com") + _string("1"))
WRITE_FLAGS = 0x02 | 0x08 | 0x10  # write, create, truncate


def _feed(audit: SFTPAudit, client: bytes, server: bytes, step: int = 0) -> None:
    """Feed whole, or ``step`` bytes at a time (packets split anywhere)."""
    for feed, stream in ((audit.client_data, client), (audit.server_data, server)):
        for i in range(0, len(stream), step or len(stream) or 1):
            feed(stream[i:i + (step or len(stream))])


def test_an_upload_is_one_event_with_its_bytes_whatever_the_chunking() -> None:
    chunk = b"x" * 40_000
    client = INIT + open_(1, "up.bin", WRITE_FLAGS) + write(2, b"h1", 0, chunk) \
        + write(3, b"h1", 40_000, chunk[:123]) + close(4, b"h1")
    server = VERSION + handle(1, b"h1") + status(2) + status(3) + status(4)
    for step in (0, 1, 7, 4096):
        audit = SFTPAudit()
        _feed(audit, client, server, step)
        assert audit.events() == [{"action": "write", "path": "up.bin", "bytes_read": 0,
                                   "bytes_written": 40_123, "error": ""}], step
        assert audit.end() == []


def test_a_download_counts_the_data_replies() -> None:
    audit = SFTPAudit()
    _feed(audit, INIT + open_(7, "/etc/hostname", 0x01) + read(8, b"\0\0\0\1", 0, 32768)
          + read(9, b"\0\0\0\1", 32768, 32768) + close(10, b"\0\0\0\1"),
          VERSION + handle(7, b"\0\0\0\1") + data(8, b"a" * 32768) + data(9, b"b" * 5)
          + status(10))
    assert audit.events() == [{"action": "read", "path": "/etc/hostname",
                               "bytes_read": 32773, "bytes_written": 0, "error": ""}]


def test_refused_and_changing_operations() -> None:
    audit = SFTPAudit()
    client = INIT + open_(1, "/root/secret", 0x01) \
        + _packet(18, _id(2) + _string("a") + _string("b")) \
        + _packet(200, _id(3) + _string("posix-rename@openssh.com") + _string("b")
                  + _string("c")) \
        + _packet(13, _id(4) + _string("c")) + _packet(14, _id(5) + _string("d")) \
        + _packet(15, _id(6) + _string("d")) + _packet(17, _id(7) + _string("stat-me"))
    server = VERSION + status(1, 3, "Permission denied") + status(2) + status(3) \
        + status(4, 2, "No such file") + status(5) + status(6) + status(7)
    _feed(audit, client, server)
    assert audit.events() == [
        {"action": "read", "path": "/root/secret", "bytes_read": 0, "bytes_written": 0,
         "error": "Permission denied"},
        {"action": "rename", "path": "a", "target": "b", "error": ""},
        {"action": "rename", "path": "b", "target": "c", "error": ""},
        {"action": "remove", "path": "c", "error": "No such file"},
        {"action": "mkdir", "path": "d", "error": ""},
        {"action": "rmdir", "path": "d", "error": ""},
    ]


def test_a_reused_request_id_hides_nothing() -> None:
    # Two requests in flight under one id: replies come in order, so each is matched.
    audit = SFTPAudit()
    _feed(audit, INIT + open_(5, "f", WRITE_FLAGS) + _packet(13, _id(5) + _string("victim")),
          VERSION + handle(5, b"h") + status(5))
    assert audit.events() == [{"action": "remove", "path": "victim", "error": ""}]
    assert audit.end() == [{"action": "write", "path": "f", "bytes_read": 0,
                            "bytes_written": 0, "error": ""}]


def test_the_end_reports_open_files_and_unanswered_operations() -> None:
    audit = SFTPAudit()
    _feed(audit, INIT + open_(1, "big", WRITE_FLAGS) + write(2, b"h", 0, b"abc")
          + _packet(13, _id(3) + _string("gone?")), VERSION + handle(1, b"h") + status(2))
    assert audit.events() == []
    assert audit.end() == [
        {"action": "remove", "path": "gone?", "error": "no reply before the session ended"},
        {"action": "write", "path": "big", "bytes_read": 0, "bytes_written": 3, "error": ""},
    ]


def test_malformed_packets_keep_the_reader_in_step() -> None:
    audit = SFTPAudit()
    bad_open = _packet(3, _id(1) + struct.pack(">I", 1000) + b"short")
    _feed(audit, INIT + bad_open + _packet(14, _id(2) + _string("\xff-dir")),
          VERSION + status(1, 4, "Failure") + status(2))
    assert audit.events() == [
        {"action": "read", "path": "", "bytes_read": 0, "bytes_written": 0, "error": "Failure"},
        {"action": "mkdir", "path": "\xff-dir", "error": ""}]


def test_a_path_that_is_not_utf8_is_shown_escaped() -> None:
    audit = SFTPAudit()
    _feed(audit, INIT + _packet(13, _id(1) + _string(b"caf\xe9")), VERSION + status(1))
    assert audit.events() == [{"action": "remove", "path": "caf\\xe9", "error": ""}]


def test_each_event_in_one_line() -> None:
    assert describe({"action": "write", "path": "up.bin", "bytes_read": 0,
                     "bytes_written": 40_123, "error": ""}) == "write up.bin: 40123 bytes"
    assert describe({"action": "read", "path": "/root/x", "bytes_read": 0, "bytes_written": 0,
                     "error": "Permission denied"}) == "read /root/x: 0 bytes: Permission denied"
    assert describe({"action": "rename", "path": "a", "target": "b", "error": ""}) \
        == "rename a to b"
    assert describe({"action": "rmdir", "path": "d", "error": "Failure"}) == "rmdir d: Failure"
