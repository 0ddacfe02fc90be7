"""Start a process as a Unix login, on pipes or on a fresh pseudo-terminal.

The decisions (may this node run as that login, which client variables pass,
what the environment is) are pure functions; :func:`spawn` is the one place
that forks. The child runs like an OpenSSH session child: its own session
(``setsid``), the login's uid/gid and supplementary groups when we are root,
a clean environment, the home directory as working directory and, with a PTY,
the terminal as its controlling terminal.
"""

from __future__ import annotations

import contextlib
import fcntl
import grp
import os
import pwd
import signal
import struct
import subprocess
import termios
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from gatehouse.errors import AccessDenied

__all__ = [
    "DEFAULT_ENV_ALLOWED",
    "DEFAULT_PATH",
    "SESSION_SIGNALS",
    "SFTP_SERVER",
    "Account",
    "Child",
    "PtyRequest",
    "check_can_run_as",
    "describe_exit",
    "filter_client_env",
    "lookup_account",
    "session_argv",
    "session_environment",
    "set_window_size",
    "signal_name",
    "signal_number",
    "spawn",
    "ssh_vars",
    "subsystem_refusal",
    "unignore_session_signals",
]

SETPRIV = "/usr/bin/setpriv"  # util-linux, Essential in Debian
SFTP_SERVER = "/usr/lib/openssh/sftp-server"  # Debian's openssh-sftp-server
F_SETPIPE_SZ = 1031  # fcntl.F_SETPIPE_SZ (Linux); in the fcntl module from Python 3.12 on
PIPE_SIZE = 1 << 20

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

# Variables a client may set when the policy names none: locale and terminal
# hints only (Debian's sshd_config accepts "LANG LC_* COLORTERM NO_COLOR").
# Anything that changes what runs (PATH, LD_*, BASH_ENV, PYTHONPATH...) is out.
DEFAULT_ENV_ALLOWED = frozenset({"LANG", "LANGUAGE", "LC_*", "TERM", "COLORTERM", "NO_COLOR"})

# Never taken from the client, even when a policy allows them by name: the
# dynamic loader's knobs, exported bash functions, and what the node sets itself.
_ENV_NEVER_PREFIXES = ("LD_", "BASH_FUNC_", "SSH_")
_ENV_NEVER = frozenset({"HOME", "USER", "LOGNAME", "SHELL", "PATH", "MAIL"})


@dataclass(frozen=True)
class Account:
    """A Unix login as the password database describes it."""

    name: str
    uid: int
    gid: int
    home: str
    shell: str

    @classmethod
    def from_pwd(cls, pw: pwd.struct_passwd) -> Account:
        return cls(pw.pw_name, pw.pw_uid, pw.pw_gid, pw.pw_dir, pw.pw_shell or "/bin/sh")


def lookup_account(login: str) -> Account:
    """The account for ``login``, if this node can run processes as it.

    Raises AccessDenied when there is no such user, or when the node does not
    run as root and ``login`` is not the user it runs as.
    """
    try:
        account = Account.from_pwd(pwd.getpwnam(login))
    except (KeyError, ValueError):  # ValueError: an embedded NUL
        raise AccessDenied(f"login {login!r} does not exist on this node") from None
    euid = os.geteuid()
    if euid != 0 and account.uid != euid:
        raise AccessDenied(
            f"cannot run as login {login!r}: the node runs as user "
            f"{_user_name(euid)!r}, not root"
        )
    return account


# Signals a session's processes must be able to receive as usual.
SESSION_SIGNALS = (signal.SIGHUP, signal.SIGINT, signal.SIGQUIT, signal.SIGTERM)


def _ignored(signum: int, frame: object) -> None:
    """Stands in for SIG_IGN in the node; exec resets it to the default."""


def unignore_session_signals() -> None:
    """Call once in the node's main thread, before sessions start.

    A node started with a signal ignored (SIGHUP under nohup, SIGINT and SIGQUIT
    as a shell's background job) would hand that on to every session: an ignored
    signal stays ignored across fork and exec, so a client's hang-up or a
    forwarded HUP would not end the session's shell. A handler that does nothing
    keeps the node ignoring it, and exec resets a handler to the default.
    """
    for signum in SESSION_SIGNALS:
        if signal.getsignal(signum) == signal.SIG_IGN:
            signal.signal(signum, _ignored)


def check_can_run_as(login: str) -> None:
    """Raise AccessDenied unless a session could run as ``login`` here (see lookup_account)."""
    lookup_account(login)


def _user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _env_name_ok(name: str) -> bool:
    return (
        name.isascii()
        and (name[:1].isalpha() or name[:1] == "_")
        and all(c.isalnum() or c == "_" for c in name)
    )


def _env_allowed(name: str, allowed: frozenset[str]) -> bool:
    if name in allowed:
        return True
    return any(p.endswith("*") and name.startswith(p[:-1]) for p in allowed)


def filter_client_env(
    client_env: Mapping[str, str], allowed: frozenset[str] | None
) -> dict[str, str]:
    """The client's variables that may reach the child.

    ``allowed`` holds names and ``PREFIX*`` patterns; None means
    DEFAULT_ENV_ALLOWED. Malformed names and the never-list are always dropped.
    """
    patterns = DEFAULT_ENV_ALLOWED if allowed is None else allowed
    return {
        name: value
        for name, value in client_env.items()
        if _env_name_ok(name)
        and "\0" not in value
        and name not in _ENV_NEVER
        and not name.startswith(_ENV_NEVER_PREFIXES)
        and _env_allowed(name, patterns)
    }


def session_environment(
    account: Account,
    *,
    client_env: Mapping[str, str],
    term: str | None = None,
    ssh_vars: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The child's whole environment: filtered client variables, then ours on top."""
    env = dict(client_env)
    env.update(
        HOME=account.home,
        USER=account.name,
        LOGNAME=account.name,
        SHELL=account.shell,
        PATH=DEFAULT_PATH,
    )
    if term:
        env["TERM"] = term
    env.update(ssh_vars or {})
    return env


# Shells that run what they are given: a subsystem (sftp-server, started directly, not
# through the shell: see session.py) is served only to logins with one of these. A login
# whose shell refuses or restricts sessions (nologin, false, git-shell, rbash, a custom
# one) would refuse `shell -c sftp-server` under sshd too; here, deny by default.
_REGULAR_SHELLS = frozenset({"sh", "bash", "dash", "zsh", "ksh", "ksh93", "mksh", "fish",
                            "tcsh", "csh"})


def subsystem_refusal(account: Account) -> str | None:
    """Why ``account`` may not be served a subsystem (None: it may)."""
    if os.path.basename(account.shell) in _REGULAR_SHELLS:
        return None
    return (f"file transfer is refused for login {account.name}: its shell "
            f"({account.shell or 'none'}) is not a regular shell, and a transfer may not "
            "go around it")


def _tty_gid(account: Account) -> int:
    """The group a session's terminal belongs to: tty (so that write(1) and wall may
    reach it, as with sshd), else the login's own."""
    try:
        return grp.getgrnam("tty").gr_gid
    except KeyError:
        return account.gid


def session_argv(account: Account, command: str | None) -> list[str]:
    """argv for a session: ``shell -c COMMAND``, or a login shell (argv0 "-bash")."""
    base = os.path.basename(account.shell)
    if command is None:
        return ["-" + base]
    return [base, "-c", command]


@dataclass(frozen=True)
class PtyRequest:
    """What the client asked for in its pty-req (RFC 4254 section 6.2)."""

    term: str
    cols: int
    rows: int
    xpixel: int = 0
    ypixel: int = 0
    modes: Mapping[int, int] = field(default_factory=dict)


def set_window_size(fd: int, cols: int, rows: int, xpixel: int = 0, ypixel: int = 0) -> None:
    """Set a terminal's size; the kernel sends SIGWINCH to its foreground group."""
    clamp = 0xFFFF
    size = struct.pack(
        "HHHH", min(rows, clamp), min(cols, clamp), min(xpixel, clamp), min(ypixel, clamp)
    )
    fcntl.ioctl(fd, termios.TIOCSWINSZ, size)


# RFC 4254 section 8 encoded terminal modes -> termios. Opcodes 1-18 are
# control characters; the rest are flags of iflag(0), oflag(1), cflag(2) or
# lflag(3). Names missing on this platform are skipped, as sshd does.
_MODE_CHARS = {
    1: "VINTR", 2: "VQUIT", 3: "VERASE", 4: "VKILL", 5: "VEOF", 6: "VEOL", 7: "VEOL2",
    8: "VSTART", 9: "VSTOP", 10: "VSUSP", 11: "VDSUSP", 12: "VREPRINT", 13: "VWERASE",
    14: "VLNEXT", 15: "VFLUSH", 16: "VSWTCH", 17: "VSTATUS", 18: "VDISCARD",
}
_MODE_FLAGS = {
    30: (0, "IGNPAR"), 31: (0, "PARMRK"), 32: (0, "INPCK"), 33: (0, "ISTRIP"),
    34: (0, "INLCR"), 35: (0, "IGNCR"), 36: (0, "ICRNL"), 37: (0, "IUCLC"),
    38: (0, "IXON"), 39: (0, "IXANY"), 40: (0, "IXOFF"), 41: (0, "IMAXBEL"),
    42: (0, "IUTF8"),
    50: (3, "ISIG"), 51: (3, "ICANON"), 52: (3, "XCASE"), 53: (3, "ECHO"),
    54: (3, "ECHOE"), 55: (3, "ECHOK"), 56: (3, "ECHONL"), 57: (3, "NOFLSH"),
    58: (3, "TOSTOP"), 59: (3, "IEXTEN"), 60: (3, "ECHOCTL"), 61: (3, "ECHOKE"),
    62: (3, "PENDIN"),
    70: (1, "OPOST"), 71: (1, "OLCUC"), 72: (1, "ONLCR"), 73: (1, "OCRNL"),
    74: (1, "ONOCR"), 75: (1, "ONLRET"),
    90: (2, "CS7"), 91: (2, "CS8"), 92: (2, "PARENB"), 93: (2, "PARODD"),
}
_DISABLED_CHAR = 255  # the wire's "no character" (OpenSSH's _POSIX_VDISABLE)


def _apply_modes(fd: int, modes: Mapping[int, int]) -> None:
    attrs = termios.tcgetattr(fd)
    cc: list[bytes | int] = attrs[6]
    for opcode, value in modes.items():
        if opcode in _MODE_CHARS:
            index = getattr(termios, _MODE_CHARS[opcode], None)
            if index is not None and index < len(cc):
                cc[index] = bytes([0 if value == _DISABLED_CHAR else value & 0xFF])
        elif opcode in _MODE_FLAGS:
            slot, name = _MODE_FLAGS[opcode]
            flag = getattr(termios, name, None)
            if flag is not None:
                attrs[slot] = attrs[slot] | flag if value else attrs[slot] & ~flag
    termios.tcsetattr(fd, termios.TCSANOW, attrs)


def _take_controlling_tty() -> None:
    # Runs in the child after setsid (start_new_session) and the uid switch:
    # a session leader may make its stdin, the PTY slave, its controlling tty.
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


@dataclass
class Child:
    """A started session process and our ends of its I/O, all non-blocking.

    With a PTY, ``stdin`` and ``stdout`` are the same master fd and ``stderr``
    is -1. Closed fds are -1. ``pidfd`` becomes readable when the child exits.
    """

    pid: int
    pidfd: int
    stdin: int
    stdout: int
    stderr: int
    tty_name: str | None
    _popen: subprocess.Popen[bytes]

    @property
    def pty(self) -> bool:
        return self.tty_name is not None

    def signal_group(self, sig: int) -> None:
        """Send ``sig`` to the child's process group (it leads its own session)."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, sig)

    def reap(self) -> int | None:
        """The raw wait status once the child has exited (None while it runs)."""
        if self._popen.returncode is not None:
            raise RuntimeError("child already reaped")
        try:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
        except ChildProcessError:  # someone else reaped it; report a plain failure
            pid, status = self.pid, 255 << 8
        if pid == 0:
            return None
        self._popen.returncode = os.waitstatus_to_exitcode(status)
        return status

    def send_eof(self) -> None:
        """End the child's input: close the pipe, or type VEOF (^D) on a PTY.

        A terminal cannot be half-closed, and VEOF means end-of-file only in
        canonical mode; in raw mode it would be a stray keystroke, so it is
        not typed there. Either way no more input is written.
        """
        if self.stdin >= 0 and self.pty:
            with contextlib.suppress(OSError):
                attrs = termios.tcgetattr(self.stdin)
                if attrs[3] & termios.ICANON:
                    os.write(self.stdin, attrs[6][termios.VEOF])
        self.close_fd("stdin")

    def close_fd(self, name: str) -> None:
        """Close one of stdin/stdout/stderr/pidfd (a shared PTY fd closes once)."""
        fd = getattr(self, name)
        if fd < 0:
            return
        setattr(self, name, -1)
        if fd not in (self.stdin, self.stdout, self.stderr, self.pidfd):
            os.close(fd)


def spawn(
    account: Account,
    argv: Sequence[str],
    env: Mapping[str, str],
    *,
    pty: PtyRequest | None = None,
    program: str | None = None,
) -> Child:
    """Start ``program`` (default ``account.shell``) with ``argv`` as ``account``.

    With ``pty``, the child gets a new terminal (size and modes as requested)
    and ``SSH_TTY`` names it. Raises OSError or SubprocessError on failure.
    """
    cwd = account.home if os.path.isdir(account.home) else "/"
    as_root = os.geteuid() == 0  # else lookup_account made sure we are the login
    ours: list[int] = []  # our ends, closed again if anything fails
    theirs: list[int] = []  # the child's ends, always closed in the parent
    preexec: Callable[[], None] | None = None
    tty_name = None
    try:
        if pty is not None:
            master, slave = os.openpty()
            ours.append(master)
            theirs.append(slave)
            _apply_modes(slave, pty.modes)
            set_window_size(master, pty.cols, pty.rows, pty.xpixel, pty.ypixel)
            if as_root:  # the login's own terminal, as sshd hands it over
                os.fchown(slave, account.uid, _tty_gid(account))
                os.fchmod(slave, 0o620)
            tty_name = os.ttyname(slave)
            env = {**env, "SSH_TTY": tty_name}
            stdio = (slave, slave, slave)
            preexec = _take_controlling_tty
        else:
            for child_reads in (True, False, False):  # stdin, stdout, stderr
                r, w = os.pipe2(os.O_CLOEXEC)
                if not child_reads and as_root:
                    _widen(w)
                ours.append(w if child_reads else r)
                theirs.append(r if child_reads else w)
            stdio = (theirs[0], theirs[1], theirs[2])
        program, args, as_login = program or account.shell, list(argv), as_root
        if as_root and preexec is None and not args[0].startswith("-"):
            program, args, as_login = SETPRIV, _setpriv_argv(account, program, args), False
        popen = subprocess.Popen(
            args,
            executable=program,
            stdin=stdio[0],
            stdout=stdio[1],
            stderr=stdio[2],
            cwd=cwd,
            env=dict(env),
            start_new_session=True,
            preexec_fn=preexec,
            umask=0o022,
            user=account.uid if as_login else None,
            group=account.gid if as_login else None,
            extra_groups=os.getgrouplist(account.name, account.gid) if as_login else None,
        )
        try:
            pidfd = os.pidfd_open(popen.pid)
        except OSError:
            popen.kill()
            popen.wait()
            raise
    except BaseException:
        for fd in ours:
            os.close(fd)
        raise
    finally:
        for fd in theirs:
            os.close(fd)
    for fd in ours:
        os.set_blocking(fd, False)
    if pty is not None:
        return Child(popen.pid, pidfd, ours[0], ours[0], -1, tty_name, popen)
    return Child(popen.pid, pidfd, ours[0], ours[1], ours[2], None, popen)


def _setpriv_argv(account: Account, program: str, argv: list[str]) -> list[str]:
    """``program`` (``shell -c COMMAND``) run through setpriv(1), which takes the login's
    ids and execs it.

    Popen cannot vfork when it must change ids itself, and a fork copies the page
    tables of the whole node (~80 MB): measured here, 2.7 ms of the node's CPU and
    2.8 ms in the child per session, against 0.14 ms and 1.7 ms (two execs) this
    way. Only for a command without a terminal: a login shell needs its argv[0]
    ("-bash"), which setpriv cannot give, and a terminal needs Python in the child
    anyway. The shell sees its full path as $0 here, where sshd gives its name.
    """
    groups = ",".join(str(g) for g in os.getgrouplist(account.name, account.gid))
    return [SETPRIV, f"--reuid={account.uid}", f"--regid={account.gid}",
            f"--groups={groups}", "--", program, *argv[1:]]


def _widen(pipe_fd: int) -> None:
    """A 1 MiB pipe instead of 64 KiB for the child's output: a busy stream wakes the
    node once per 256 KiB read rather than per 64 KiB. Only a node running as root
    widens pipes: another user's pipes count against pipe-user-pages-soft (64 MiB),
    past which the kernel gives that user's new pipes 8 KiB. Best effort."""
    with contextlib.suppress(OSError):
        fcntl.fcntl(pipe_fd, F_SETPIPE_SZ, PIPE_SIZE)


def ssh_vars(peer: object, local: object) -> dict[str, str]:
    """SSH_CLIENT and SSH_CONNECTION as sshd sets them, from TCP (host, port) pairs."""
    if not (isinstance(peer, tuple) and isinstance(local, tuple)
            and len(peer) >= 2 and len(local) >= 2):
        return {}
    return {
        "SSH_CLIENT": f"{peer[0]} {peer[1]} {local[1]}",
        "SSH_CONNECTION": f"{peer[0]} {peer[1]} {local[0]} {local[1]}",
    }


def describe_exit(status: int) -> tuple[int, str | None, bool]:
    """(exit status, signal name or None, core dumped) from a raw wait status."""
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status), signal_name(os.WTERMSIG(status)), os.WCOREDUMP(status)
    return os.waitstatus_to_exitcode(status), None, False


def signal_number(name: str) -> int | None:
    """The number of a signal named as on the wire ("TERM"), if it is a known one."""
    try:
        return int(signal.Signals["SIG" + name])
    except KeyError:
        return None


def signal_name(number: int) -> str:
    """A signal's wire name ("TERM"), or its number for unnamed ones."""
    try:
        return signal.Signals(number).name.removeprefix("SIG")
    except ValueError:
        return str(number)
