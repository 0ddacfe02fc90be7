"""What an SFTP session does to files, read from the bytes it carries. Pure.

The node relays the client's SFTP packets to the login's sftp-server and its replies
back (session.py); this reads both directions as they pass and says, once each is
answered, which files were opened for reading or writing (with the bytes moved, told
when the file is closed), renamed, removed and which directories were made or removed.
Packets follow SFTP version 3 (draft-ietf-secsh-filexfer-02, what OpenSSH speaks;
posix-rename@openssh.com from OpenSSH's PROTOCOL). Framing is by each packet's length
alone, as sftp-server frames them, so the reader cannot lose step with the server;
a packet it cannot parse is skipped. The bulk of WRITE and DATA packets is counted,
never copied.
"""

from __future__ import annotations

import struct
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["SFTPAudit", "SFTPEvent", "describe"]

# Packet types (draft-ietf-secsh-filexfer-02 section 3).
_INIT, _VERSION = 1, 2
_OPEN, _CLOSE, _READ, _WRITE = 3, 4, 5, 6
_REMOVE, _MKDIR, _RMDIR, _RENAME = 13, 14, 15, 18
_EXTENDED = 200
_STATUS, _HANDLE, _DATA = 101, 102, 103
_FXF_WRITE = 0x02
_FX_OK = 0

_HEAD = 4 + 1 + 4 + 4 + 256 + 8 + 4  # a WRITE's fields before its data (a handle <= 256)
_MAX_PACKET = 256 * 1024 + 1024  # larger packets are not parsed (sftp-server refuses them)
_UNANSWERED = "no reply before the session ended"

SFTPEvent = dict[str, object]  # the fields of one `sftp` audit event


class _Malformed(Exception):
    """A packet shorter than its fields say."""


class _Reader:
    def __init__(self, data: bytes, pos: int) -> None:
        self._data = data
        self._pos = pos

    def u32(self) -> int:
        if self._pos + 4 > len(self._data):
            raise _Malformed
        (value,) = struct.unpack_from(">I", self._data, self._pos)
        self._pos += 4
        return int(value)

    def string(self) -> bytes:
        size = self.u32()
        if self._pos + size > len(self._data):
            raise _Malformed
        self._pos += size
        return self._data[self._pos - size:self._pos]

    def text(self) -> str:
        return self.string().decode("utf-8", "backslashreplace")


class _Framer:
    """One direction's bytes -> (packet head, packet length): a packet of a type in
    ``partial`` comes as its first _HEAD bytes (a WRITE's or DATA's fields before its
    data), any other whole (up to _MAX_PACKET)."""

    def __init__(self, partial: frozenset[int], on_packet: Callable[[bytes, int], None]
                 ) -> None:
        self._partial = partial
        self._on_packet = on_packet
        self._buf = bytearray()
        self._want = 5  # bytes of head to gather: length and type first
        self._size = 0  # the packet's length with its length field; 0: not known yet
        self._skip = 0  # bytes of the current packet's data still to pass over

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        view = memoryview(data)
        pos, end = 0, len(view)
        while pos < end:
            if self._skip:
                step = min(self._skip, end - pos)
                self._skip -= step
                pos += step
                continue
            take = min(self._want - len(self._buf), end - pos)
            self._buf += view[pos:pos + take]
            pos += take
            if len(self._buf) < self._want:
                return
            if not self._size:
                (length,) = struct.unpack_from(">I", self._buf)
                self._size = length + 4
                whole = self._buf[4] not in self._partial and self._size <= _MAX_PACKET
                self._want = self._size if whole else min(self._size, _HEAD)
                if len(self._buf) < self._want:
                    continue
            head = bytes(self._buf)
            self._skip = self._size - len(head)
            size = self._size
            self._buf.clear()
            self._want, self._size = 5, 0
            self._on_packet(head, size)


@dataclass(slots=True)
class _Request:
    """A request waiting for its reply, with what the audit needs of it."""

    id: int
    kind: int
    path: str = ""
    target: str = ""  # a rename's new path
    handle: bytes = b""
    size: int = 0  # a WRITE's data
    write: bool = False  # an OPEN for writing


@dataclass(slots=True)
class _OpenFile:
    path: str
    write: bool
    read_bytes: int = 0
    written_bytes: int = 0

    def event(self, error: str = "") -> SFTPEvent:
        return {"action": "write" if self.write else "read", "path": self.path,
                "bytes_read": self.read_bytes, "bytes_written": self.written_bytes,
                "error": error}


class SFTPAudit:
    """Feed it the client's bytes (:meth:`client_data`) and the server's
    (:meth:`server_data`) in order; :meth:`events` hands out what happened since the
    last call, and :meth:`end` what was still open when the session ended.

    sftp-server answers each request once, in the order they came (it is one loop that
    reads a request and writes its reply), so replies are matched to requests in order,
    the id confirming: a client that reuses an id in flight cannot hide an operation.
    """

    def __init__(self) -> None:
        self._client = _Framer(frozenset({_WRITE}), self._request)
        # Only a STATUS or HANDLE reply is read whole: the others' heads name their id.
        self._server = _Framer(frozenset(range(256)) - {_STATUS, _HANDLE}, self._reply)
        self._pending: deque[_Request] = deque()
        self._files: dict[bytes, _OpenFile] = {}  # handle -> the file it opened
        self._events: list[SFTPEvent] = []

    def client_data(self, data: bytes | bytearray | memoryview) -> None:
        self._client.feed(data)

    def server_data(self, data: bytes | bytearray | memoryview) -> None:
        self._server.feed(data)

    def events(self) -> list[SFTPEvent]:
        found, self._events = self._events, []
        return found

    def end(self) -> list[SFTPEvent]:
        """The session ended: operations never answered, and files still open."""
        while self._pending:
            self._operation(self._pending.popleft(), _UNANSWERED)
        for file in self._files.values():
            self._events.append(file.event())
        self._files.clear()
        return self.events()

    # -- client -> server ---------------------------------------------------------------

    def _request(self, head: bytes, size: int) -> None:
        kind = head[4]
        if kind == _INIT:
            return  # no id; answered by VERSION
        fields = _Reader(head, 5)
        try:
            request = _Request(fields.u32(), kind)
        except _Malformed:
            return  # sftp-server gives up on a request without an id
        try:
            if kind == _WRITE:
                request.handle = fields.string()
                fields.u32(), fields.u32()  # offset
                request.size = fields.u32()
            elif kind in (_READ, _CLOSE):
                request.handle = fields.string()
            elif kind == _OPEN:
                request.path = fields.text()
                request.write = bool(fields.u32() & _FXF_WRITE)
            elif kind in (_REMOVE, _MKDIR, _RMDIR):
                request.path = fields.text()
            elif kind == _RENAME:
                request.path, request.target = fields.text(), fields.text()
            elif kind == _EXTENDED and fields.string() == b"posix-rename@openssh.com":
                request.kind = _RENAME
                request.path, request.target = fields.text(), fields.text()
        except _Malformed:
            pass  # sftp-server will answer it (an error) all the same: keep it in line
        self._pending.append(request)

    # -- server -> client ---------------------------------------------------------------

    def _reply(self, head: bytes, size: int) -> None:
        if head[4] == _VERSION:
            return
        fields = _Reader(head, 5)
        try:
            reply_id = fields.u32()
        except _Malformed:
            return
        while self._pending:
            request = self._pending.popleft()
            if request.id == reply_id:
                break
            self._operation(request, _UNANSWERED)  # not expected of sftp-server
        else:
            return
        try:
            self._answer(request, head[4], fields)
        except _Malformed:
            return

    def _answer(self, request: _Request, kind: int, fields: _Reader) -> None:
        asked = request.kind
        if kind == _DATA and asked == _READ:
            file = self._files.get(request.handle)
            if file is not None:
                file.read_bytes += fields.u32()
        elif kind == _HANDLE and asked == _OPEN:
            self._files[fields.string()] = _OpenFile(request.path, request.write)
        elif kind == _STATUS:
            code = fields.u32()
            error = "" if code == _FX_OK else (_message(fields) or f"status {code}")
            if asked == _WRITE:
                file = self._files.get(request.handle)
                if file is not None and not error:
                    file.written_bytes += request.size
            elif asked == _CLOSE:
                file = self._files.pop(request.handle, None)
                if file is not None:
                    self._events.append(file.event(error))
            else:
                self._operation(request, error)

    def _operation(self, request: _Request, error: str) -> None:
        """The event for an answered (or never answered) request, if it is audited."""
        kind = request.kind
        if kind == _OPEN and error:  # an open that succeeded is told at its close
            self._events.append(_OpenFile(request.path, request.write).event(error))
        elif kind == _RENAME:
            self._events.append({"action": "rename", "path": request.path,
                                 "target": request.target, "error": error})
        elif kind in _ACTIONS:
            self._events.append({"action": _ACTIONS[kind], "path": request.path,
                                 "error": error})


_ACTIONS = {_REMOVE: "remove", _MKDIR: "mkdir", _RMDIR: "rmdir"}


def describe(op: SFTPEvent) -> str:
    """One line for a person (the event's message): ``write up.bin: 52428800 bytes``."""
    action, path, error = op.get("action"), op.get("path"), op.get("error")
    if action in ("read", "write"):
        moved = op.get("bytes_read") if action == "read" else op.get("bytes_written")
        what = f"{action} {path}: {moved} bytes"
    elif action == "rename":
        what = f"rename {path} to {op.get('target')}"
    else:
        what = f"{action} {path}"
    return f"{what}: {error}" if error else what


def _message(fields: _Reader) -> str:
    try:
        return fields.text()
    except _Malformed:
        return ""
