"""The node's SSH session: one channel, one child process, bytes both ways.

Authentication and authorization happen before this layer: the lead's
``SSHServer.session_requested()`` returns ``make_session_factory(policy)()``
for a user it has let in. The session then runs exec/shell requests as the
policy's login (see spawn.py), on pipes or on a PTY, and carries data with
flow control in both directions and no tasks of its own.

The ``sftp`` subsystem is OpenSSH's sftp-server, started as the login as a command
is (its uid, gid and groups, environment and home directory), so the kernel checks
every file operation against the login's own permissions. asyncssh's SFTPServer
would run inside the node, as the node's user (root): each operation would have to
be checked by hand or run under a switched identity, and a missed case would read
or write as root. sftp-server is started directly, not through the login's shell
as sshd does: the shell reads the login's rc files (bash its ~/.bashrc under SSH),
which could run another program in its place, unrecorded and unaudited. The node
reads the SFTP packets as they pass (sftpaudit.py) for the audit; a transfer is
not recorded as terminal output. Since the shell is not asked, a login whose shell
refuses or restricts sessions (nologin, git-shell, rbash: under sshd its `shell -c
sftp-server` fails) is refused sftp here (spawn.subsystem_refusal): only logins with
a regular shell are served.

Flow control:

- child -> client: the child's fds are read with ``loop.add_reader``, one
  chunk per readiness event; when the channel's send buffer passes its high
  water mark asyncssh calls ``pause_writing()`` and the readers are removed
  until ``resume_writing()``. The child then blocks on a full pipe/PTY.
- client -> child: writes are non-blocking; on a short write the rest is kept
  and the channel's reading is paused (``chan.pause_reading()``), so the SSH
  window closes on the client until the child has taken the data.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import logging
import os
import shlex
import signal
import subprocess
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Protocol

import asyncssh

from gatehouse.errors import AccessDenied, BadParameter

from .sftpaudit import SFTPAudit, describe
from .spawn import (
    SFTP_SERVER,
    Child,
    PtyRequest,
    check_can_run_as,
    describe_exit,
    filter_client_env,
    lookup_account,
    session_argv,
    session_environment,
    set_window_size,
    signal_number,
    spawn,
    ssh_vars,
    subsystem_refusal,
)

__all__ = [
    "EventHook",
    "NodeSession",
    "SessionInfo",
    "SessionPolicy",
    "SessionTap",
    "TapFactory",
    "check_can_run_as",
    "is_scp_transfer",
    "make_session_factory",
]

log = logging.getLogger(__name__)

EventHook = Callable[[str, dict[str, object]], None]

# The child's output is read this much at a time: the channel data one SSH packet to
# gsh carries (gsh accepts 256 KiB, client/ssh.py; OpenSSH 32 KiB: asyncssh splits).
_READ_CHUNK = 256 * 1024
# Seconds the exit report waits for the session's recording to be written out (a failure
# can then still be told to the user on the session's stderr); then it goes anyway.
TAP_WAIT = 2.0


class SessionTap(Protocol):
    """What a session recorder sees: output as sent to the client, resizes, the end.

    Called synchronously on the hot path: keep it cheap (append to a buffer).
    """

    def output(self, data: bytes) -> None: ...

    def resize(self, cols: int, rows: int) -> None: ...

    def end(self, then: Callable[[], None] | None = None) -> None:
        """The session is over: record nothing more; call ``then`` (on the loop, once)
        when what was recorded is written out, a failure already told to the user."""

    def discard(self) -> None:
        """The session never ran (its child failed to start): keep no recording of it."""


@dataclass(frozen=True)
class SessionInfo:
    """What a tap is told about the session it records, and how it may tell the user
    something (``tell_user``: one line on the session's stderr while it runs) or end the
    session (``end_session``: its channel closes, exit status 255, its process group gets
    SIGHUP as on a hang-up)."""

    session_id: str
    login: str
    command: str  # "" for a shell
    term: str | None
    cols: int  # 0 x 0 without a PTY
    rows: int
    tell_user: Callable[[str], None] = lambda line: None
    end_session: Callable[[], None] = lambda: None


# A session's tap, made before its child starts; None: the session goes on without one;
# AccessDenied: it must not start (its recording is required and cannot be made).
TapFactory = Callable[[SessionInfo], SessionTap | None]


@dataclass(frozen=True)
class SessionPolicy:
    """What an authorized user's sessions may do on this node.

    ``env_allowed`` holds variable names and ``PREFIX*`` patterns the client
    may set; None means spawn.DEFAULT_ENV_ALLOWED (LANG, LANGUAGE, LC_*, TERM,
    COLORTERM, NO_COLOR). LD_*, BASH_FUNC_*, SSH_*, PATH, HOME, USER, LOGNAME,
    SHELL and MAIL never come from the client.

    ``on_event(name, fields)`` receives "session.start" (login, pty, command,
    term, cols, rows), "exec" (command) and
    "session.end" (exit_status - 128+N after signal N -, exit_signal,
    core_dumped, disconnected), "sftp" (a file operation: see sftpaudit, and a
    message saying it in a line) and "sftp.denied" (message), each with the
    session's ``session_id`` (a UUID).
    A hook that raises is logged and ignored.

    ``file_transfer_refused`` is None where the sftp subsystem is served, else the
    reason it is refused (deny by default). ``on_closed`` is called once the session's
    channel is gone.
    """

    login: str
    permit_pty: bool
    env_allowed: frozenset[str] | None = None
    on_event: EventHook | None = None
    tap_factory: TapFactory | None = None  # one tap (recorder) per session
    file_transfer_refused: str | None = "file transfer is not allowed"
    on_closed: Callable[[], None] | None = None

    def __post_init__(self) -> None:
        if not self.login or "\0" in self.login or "/" in self.login:
            raise BadParameter(f"session login {self.login!r} is not a valid Unix login")
        if self.env_allowed is not None and not all(
            isinstance(name, str) and name for name in self.env_allowed
        ):
            raise BadParameter(
                f"env_allowed {sorted(self.env_allowed)!r}: expected non-empty names"
            )


def is_scp_transfer(command: str | None) -> bool:
    """Whether ``command`` is scp's far end of a transfer (``scp -t`` to write, ``scp -f``
    to read): what the scp client runs with -O, or before OpenSSH 9 used sftp. Only the
    client's own shape: a shell's commands (cat, tar) move files too, which refusing
    file transfer does not stop."""
    try:
        words = shlex.split(command or "")
    except ValueError:
        return False
    if not words or os.path.basename(words[0]) != "scp":
        return False
    options = itertools.takewhile(lambda word: word != "--", words[1:])
    return any(w.startswith("-") and ("t" in w or "f" in w) for w in options)


def make_session_factory(policy: SessionPolicy) -> Callable[[], asyncssh.SSHServerSession[bytes]]:
    """A factory for SSHServer.session_requested(): each call makes one session."""
    return functools.partial(NodeSession, policy)


class NodeSession(asyncssh.SSHServerSession[bytes]):
    """One SSH session channel bound to one child process."""

    def __init__(self, policy: SessionPolicy) -> None:
        self._policy = policy
        self.session_id = str(uuid.uuid4())
        self._loop = asyncio.get_running_loop()
        self._chan: asyncssh.SSHServerChannel[bytes] | None = None
        self._pty: PtyRequest | None = None
        self._command: str | None = None
        self._child: Child | None = None
        self._reading: dict[str, asyncssh.DataType] = {}  # child outputs not at EOF yet
        self._paused = False  # the channel's send buffer is full
        self._stdin_buf = bytearray()
        self._stdin_eof = False
        self._status: int | None = None  # raw wait status once the child exited
        self._ended = False
        self._exited = False  # the exit reported to the client
        self._tap: SessionTap | None = None
        self._sftp: SFTPAudit | None = None  # the sftp subsystem's audit

    # -- requests from the client ------------------------------------------

    def connection_made(self, chan: asyncssh.SSHServerChannel[bytes]) -> None:
        self._chan = chan
        # Binary whatever the server's default; this also keeps asyncssh's
        # line editor (line_editor=True) out of the way: it needs an encoding.
        chan.set_encoding(None)

    def pty_requested(
        self, term_type: str, term_size: tuple[int, int, int, int], term_modes: Mapping[int, int]
    ) -> bool:
        if not self._policy.permit_pty:
            log.info("pty refused login=%s reason=%r", self._policy.login, "pty not permitted")
            return False
        cols, rows, xpixel, ypixel = term_size
        self._pty = PtyRequest(term_type, cols, rows, xpixel, ypixel, dict(term_modes))
        return True

    def shell_requested(self) -> bool:
        self._command = None
        return True

    def exec_requested(self, command: str) -> bool:
        self._command = command
        return True

    def subsystem_requested(self, subsystem: str) -> bool:
        if subsystem != "sftp":
            log.info("subsystem refused login=%s subsystem=%r reason=%r",
                     self._policy.login, subsystem, "only sftp is served")
            return False
        # Accepted even when refused: session_started() then says why on stderr,
        # where sftp(1) and scp(1) show it (a failed request shows no reason).
        self._command = SFTP_SERVER
        self._sftp = SFTPAudit()
        return True

    def session_started(self) -> None:
        chan = self._chan
        assert chan is not None
        policy = self._policy
        pty = None if self._sftp else self._pty  # SFTP packets never cross a terminal
        newline = "\r\n" if pty else "\n"
        transfer = self._sftp is not None or is_scp_transfer(self._command)
        if transfer and not self._may_transfer(chan, sftp=self._sftp is not None):
            return
        try:
            account = lookup_account(policy.login)
            env = session_environment(
                account,
                client_env=filter_client_env(chan.get_environment(), policy.env_allowed),
                term=pty.term if pty else None,
                ssh_vars=ssh_vars(chan.get_extra_info("peername"),
                                  chan.get_extra_info("sockname")),
            )
            # Before the child: a session whose recording is required never runs without.
            self._start_tap(pty)
            if self._sftp is not None:
                child = spawn(account, [SFTP_SERVER], env, program=SFTP_SERVER)
            else:
                child = spawn(account, session_argv(account, self._command), env, pty=pty)
        except AccessDenied as exc:
            log.warning("session refused login=%s reason=%r", policy.login, str(exc))
            self._refuse(chan, f"{exc}{newline}")
            return
        except (OSError, ValueError, subprocess.SubprocessError) as exc:  # ValueError: a NUL
            log.warning("session failed login=%s reason=%r", policy.login, str(exc))
            self._refuse(chan, f"cannot start a session as {policy.login}: {exc}{newline}")
            return
        self._child = child
        self._emit("session.start", {
            "login": policy.login,
            "recorded": self._tap is not None,
            "pty": pty is not None,
            "command": self._command,
            "subsystem": "sftp" if self._sftp else None,
            "term": pty.term if pty else None,
            "cols": pty.cols if pty else None,
            "rows": pty.rows if pty else None,
        })
        if self._command is not None and self._sftp is None:
            self._emit("exec", {"command": self._command})
        self._loop.add_reader(child.pidfd, self._on_exit)
        self._reading = {"stdout": None}
        if child.stderr >= 0:
            self._reading["stderr"] = asyncssh.EXTENDED_DATA_STDERR
        self._watch_outputs(True)

    def _start_tap(self, pty: PtyRequest | None) -> None:
        """The session's recorder, if it has one (not sftp's: its packets are audited, not
        recorded). AccessDenied from the factory refuses the session; any other failure
        is logged, and the session goes on unrecorded."""
        factory = self._policy.tap_factory
        if factory is None or self._sftp is not None:
            return
        info = SessionInfo(self.session_id, self._policy.login, self._command or "",
                           pty.term if pty else None, pty.cols if pty else 0,
                           pty.rows if pty else 0, self._tell_user, self._end_session)
        try:
            self._tap = factory(info)
        except AccessDenied:
            raise
        except Exception:
            log.exception("session %s: could not start its recording", self.session_id)

    def _refuse(self, chan: asyncssh.SSHServerChannel[bytes], line: str) -> None:
        """The session ends before its child ran: say why; its tap keeps nothing."""
        chan.write_stderr(line.encode())
        chan.exit(1)
        if self._tap is not None:
            self._tap.discard()

    def _end_session(self) -> None:
        """End the session now (its tap says so): nothing more of it reaches the client,
        its child is hung up at once, whatever the client does with the channel's close.
        A session already over (its exit waits for its recording) is left to end."""
        chan, child = self._chan, self._child
        if chan is None or child is None or self._ended or chan.is_closing():
            return
        log.warning("session ended by the node session_id=%s login=%s", self.session_id,
                    self._policy.login)
        self._hang_up(child, exit_status=255, disconnected=False)
        self._exited = True
        chan.exit(255)

    def _may_transfer(self, chan: asyncssh.SSHServerChannel[bytes], *, sftp: bool) -> bool:
        """Whether a transfer (sftp, or scp's own command) may start; if not, say why,
        audit it, end the session."""
        reason = self._policy.file_transfer_refused
        if reason is None and sftp and not os.access(SFTP_SERVER, os.X_OK):
            reason = (f"file transfer is not available on this node: {SFTP_SERVER} is not "
                      "installed (Debian: openssh-sftp-server)")
        if reason is None and sftp:
            try:
                reason = subsystem_refusal(lookup_account(self._policy.login))
            except AccessDenied as exc:
                reason = str(exc)
        if reason is None:
            return True
        log.warning("file transfer refused login=%s command=%r reason=%r",
                    self._policy.login, self._command, reason)
        self._emit("sftp.denied", {"message": reason})
        chan.write_stderr(f"{reason}\n".encode())
        chan.exit(1)
        return False

    def terminal_size_changed(self, width: int, height: int, pixwidth: int, pixheight: int) -> None:
        if self._pty is None:
            return
        self._pty = replace(self._pty, cols=width, rows=height, xpixel=pixwidth, ypixel=pixheight)
        child = self._child
        if child is not None and child.stdout >= 0:
            set_window_size(child.stdout, width, height, pixwidth, pixheight)
        if self._tap is not None:
            self._tap.resize(width, height)

    def signal_received(self, signal: str) -> None:
        number = signal_number(signal)
        child = self._child
        if number is None or child is None or self._status is not None:
            log.info("signal ignored login=%s signal=%r", self._policy.login, signal)
            return
        child.signal_group(number)

    def data_received(self, data: bytes, datatype: asyncssh.DataType) -> None:
        child = self._child
        if child is None or child.stdin < 0 or datatype is not None:
            return
        if self._sftp is not None:
            self._sftp.client_data(data)
            self._emit_sftp(self._sftp.events())
        if self._stdin_buf:
            self._stdin_buf += data
        else:
            self._write_stdin(data)

    def eof_received(self) -> bool:
        self._stdin_eof = True
        if not self._stdin_buf:
            self._send_stdin_eof()
        return True  # keep our half open: the child's output is still to come

    # -- flow control, child -> client ---------------------------------------

    def pause_writing(self) -> None:
        self._paused = True
        self._watch_outputs(False)

    def resume_writing(self) -> None:
        self._paused = False
        self._watch_outputs(True)
        if self._draining():
            # Not from inside asyncssh's send-buffer flush, which called us.
            self._loop.call_soon(self._on_output, "stdout")

    def _watch_outputs(self, on: bool) -> None:
        child = self._child
        if child is None:
            return
        for name in self._reading:
            fd = getattr(child, name)
            if on:
                self._loop.add_reader(fd, self._on_output, name)
            else:
                self._loop.remove_reader(fd)

    def _draining(self) -> bool:
        # A PTY has no EOF while anything else holds the terminal open, so
        # once the child exited we read until the master runs dry, as sshd does.
        child = self._child
        return (child is not None and child.pty and self._status is not None
                and "stdout" in self._reading)

    def _on_output(self, name: str) -> None:
        child, chan = self._child, self._chan
        if child is None or chan is None or name not in self._reading or self._paused:
            return
        if chan.is_closing():  # the client closed; connection_lost() follows
            self._watch_outputs(False)
            return
        datatype = self._reading[name]
        while True:
            try:
                data = os.read(getattr(child, name), _READ_CHUNK)
            except BlockingIOError:
                if not self._draining():
                    return
                data = b""
            except OSError:  # EIO: no process holds the PTY any more
                data = b""
            if not data:
                self._loop.remove_reader(getattr(child, name))
                del self._reading[name]
                self._maybe_finish()
                return
            if self._tap is not None:
                self._tap.output(data)
                if name not in self._reading:  # the tap ended the session (_end_session)
                    return
            elif self._sftp is not None and datatype is None:
                self._sftp.server_data(data)
                self._emit_sftp(self._sftp.events())
            chan.write(data, datatype)  # may call pause_writing() right away
            if self._paused or not self._draining():
                return

    # -- client -> child -----------------------------------------------------

    def _write_stdin(self, data: bytes | bytearray) -> None:
        child, chan = self._child, self._chan
        assert child is not None and chan is not None
        try:
            written = os.write(child.stdin, data)
        except BlockingIOError:
            written = 0
        except OSError:  # EPIPE/EIO: the child stopped reading; drop its input
            self._stdin_buf.clear()
            self._send_stdin_eof()
            return
        if written < len(data):
            self._stdin_buf += data[written:]
            chan.pause_reading()
            self._loop.add_writer(child.stdin, self._on_stdin_writable)

    def _on_stdin_writable(self) -> None:
        child, chan = self._child, self._chan
        assert child is not None and chan is not None
        self._loop.remove_writer(child.stdin)
        pending = bytes(self._stdin_buf)
        self._stdin_buf.clear()
        self._write_stdin(pending)
        if not self._stdin_buf:
            if self._stdin_eof:
                self._send_stdin_eof()
            chan.resume_reading()  # may deliver more data right here

    def _send_stdin_eof(self) -> None:
        child = self._child
        if child is not None and child.stdin >= 0:
            self._loop.remove_writer(child.stdin)
            child.send_eof()

    # -- the end ---------------------------------------------------------------

    def _on_exit(self) -> None:
        child = self._child
        assert child is not None
        status = child.reap()
        if status is None:
            return
        self._loop.remove_reader(child.pidfd)
        child.close_fd("pidfd")
        self._status = status
        if self._draining() and not self._paused:
            self._on_output("stdout")
        self._maybe_finish()

    def _maybe_finish(self) -> None:
        """Report the exit to the client once the child exited, its output ended and its
        recording was written out (a failure to write it told to the user first), or
        TAP_WAIT seconds after the rest."""
        child, status = self._child, self._status
        if child is None or status is None or self._reading or self._ended:
            return
        self._release(child)
        timer = self._loop.call_later(TAP_WAIT, self._report_exit, status)

        def written() -> None:
            timer.cancel()
            self._report_exit(status)

        self._end_taps(written)

    def _report_exit(self, status: int) -> None:
        if self._exited:
            return
        self._exited = True
        exit_status, exit_signal, core = describe_exit(status)
        self._emit("session.end", {"exit_status": exit_status, "exit_signal": exit_signal,
                                   "core_dumped": core, "disconnected": False})
        chan = self._chan
        if chan is None:
            return
        chan.write_eof()
        if exit_signal is not None:
            chan.exit_with_signal(exit_signal, core)
        else:
            chan.exit(exit_status)

    def connection_lost(self, exc: Exception | None) -> None:
        self._chan = None
        if self._policy.on_closed is not None:
            self._policy.on_closed()
        child = self._child
        if child is None or self._ended:
            return
        self._hang_up(child, exit_status=None, disconnected=True)

    def _hang_up(self, child: Child, *, exit_status: int | None, disconnected: bool) -> None:
        """End the session before its child: its taps, our ends of its pipes, the audit of
        its end; like a terminal hang-up, SIGHUP to its process group (nohup'ed work
        survives), still watched so that it is reaped."""
        self._end_taps()
        self._release(child)
        self._emit("session.end", {"exit_status": exit_status, "exit_signal": None,
                                   "core_dumped": False, "disconnected": disconnected})
        if self._status is None:
            child.signal_group(signal.SIGHUP)
            self._loop.remove_reader(child.pidfd)
            self._loop.add_reader(child.pidfd, self._reap_orphan, child)

    def _end_taps(self, then: Callable[[], None] | None = None) -> None:
        """The session is over: audit what its transfer left open, end its recording;
        ``then`` once the recording is written out (see SessionTap.end)."""
        self._ended = True
        if self._sftp is not None:
            self._emit_sftp(self._sftp.end())
        if self._tap is not None:
            self._tap.end(then)
        elif then is not None:
            then()

    def _emit_sftp(self, operations: list[dict[str, object]]) -> None:
        for fields in operations:
            self._emit("sftp", {**fields, "message": describe(fields)})

    def _reap_orphan(self, child: Child) -> None:
        if child.reap() is not None:
            self._loop.remove_reader(child.pidfd)
            child.close_fd("pidfd")

    def _release(self, child: Child) -> None:
        """Stop watching the child's I/O and close our ends of it."""
        self._watch_outputs(False)
        self._reading = {}
        if child.stdin >= 0:
            self._loop.remove_writer(child.stdin)
        self._stdin_buf.clear()
        for name in ("stdin", "stdout", "stderr"):
            child.close_fd(name)

    def _tell_user(self, line: str) -> None:
        """One line on the client's stderr, unless the session is over."""
        chan = self._chan
        if chan is None or self._exited or chan.is_closing():
            return
        newline = "\r\n" if self._pty else "\n"
        chan.write_stderr(f"{line}{newline}".encode())

    def _emit(self, event: str, fields: dict[str, object]) -> None:
        hook = self._policy.on_event
        if hook is None:
            return
        try:
            hook(event, {"session_id": self.session_id, **fields})
        except Exception:
            log.exception("session event hook failed event=%s login=%s", event, self._policy.login)

