"""The node's session layer against real clients: asyncssh and OpenSSH's ssh.

A real asyncssh server on loopback uses the session factory; the login of each
session is the SSH user name (authorization is not this layer's job).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pwd
import re
import shutil
import subprocess
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import asyncssh
import pytest

from gatehouse.errors import AccessDenied
from gatehouse.node.session import (
    SessionInfo,
    SessionPolicy,
    check_can_run_as,
    is_scp_transfer,
    make_session_factory,
)
from gatehouse.node.spawn import DEFAULT_PATH, filter_client_env, unignore_session_signals

IS_ROOT = os.geteuid() == 0
ME = "root" if IS_ROOT else os.environ.get("USER", "")
WAIT = 10.0  # seconds any single wait may take

HOST_KEY = asyncssh.generate_private_key("ssh-ed25519")
CLIENT_KEY = asyncssh.generate_private_key("ssh-ed25519")


@dataclass
class Node:
    """A running test server; ``policy`` applies to sessions opened from now on."""

    port: int
    policy: SessionPolicy
    events: list[tuple[str, dict[str, object]]] = field(default_factory=list)

    @contextlib.asynccontextmanager
    async def connect(self, username: str = ME) -> AsyncIterator[asyncssh.SSHClientConnection]:
        conn = await asyncio.wait_for(asyncssh.connect(
            "127.0.0.1", self.port, username=username, client_keys=[CLIENT_KEY],
            known_hosts=None, agent_path=None,
        ), WAIT)
        async with conn:
            yield conn


class _Server(asyncssh.SSHServer):
    def __init__(self, node_ref: list[Node]) -> None:
        self._node_ref = node_ref
        self._login = ""

    def begin_auth(self, username: str) -> bool:
        self._login = username
        return True

    def session_requested(self) -> asyncssh.SSHServerSession[bytes]:
        node = self._node_ref[0]
        return make_session_factory(replace(node.policy, login=self._login))()


@pytest.fixture
async def node() -> AsyncIterator[Node]:
    # As the node service does at start: a test run started under nohup, or as a
    # shell's background job, ignores HUP and INT, which its sessions would inherit.
    unignore_session_signals()
    ref: list[Node] = []
    # Server defaults on purpose (line_editor=True, encoding utf-8), as the
    # lead's listener uses them: the session must make its channel binary.
    server = await asyncssh.create_server(
        lambda: _Server(ref), "127.0.0.1", 0,
        server_host_keys=[HOST_KEY],
        authorized_client_keys=asyncssh.import_authorized_keys(
            CLIENT_KEY.export_public_key().decode()),
    )
    port = server.sockets[0].getsockname()[1]
    n = Node(port, SessionPolicy(login=ME, permit_pty=True))
    n.policy = replace(n.policy, on_event=lambda e, f: n.events.append((e, f)))
    ref.append(n)
    try:
        yield n
    finally:
        server.close()
        await asyncio.wait_for(server.wait_closed(), WAIT)


@pytest.fixture(scope="module")
def client_key_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("keys") / "id_ed25519"
    CLIENT_KEY.write_private_key(str(path))
    path.chmod(0o600)
    return path


async def openssh(
    node: Node, key: Path, *args: str, user: str = ME, stdin: bytes = b""
) -> tuple[int, bytes, bytes]:
    """Run OpenSSH's ssh against the node; (exit status, stdout, stderr)."""
    proc = await asyncio.create_subprocess_exec(
        "ssh", "-F", "/dev/null", "-i", str(key), "-p", str(node.port),
        "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-o", "IdentityAgent=none",
        "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
        "-o", "LogLevel=ERROR", *args[:-1], f"{user}@127.0.0.1", args[-1],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(stdin), WAIT)
    assert proc.returncode is not None
    return proc.returncode, out, err


@dataclass(frozen=True)
class Result:
    exit_status: int | None
    exit_signal: str | None
    stdout: bytes
    stderr: bytes


async def run(
    node: Node,
    command: str,
    *,
    user: str = ME,
    input: bytes = b"",
    env: dict[str, str] | None = None,
    term_type: str | None = None,
    term_size: tuple[int, int] | None = None,
) -> Result:
    """Run ``command`` over a fresh asyncssh connection; stdout and stderr as bytes."""
    async with node.connect(user) as conn:
        done = await asyncio.wait_for(
            conn.run(command, encoding=None, input=input, env=env or (),
                     term_type=term_type, term_size=term_size), WAIT)
    assert isinstance(done.stdout, bytes) and isinstance(done.stderr, bytes)
    return Result(done.exit_status, done.exit_signal[0] if done.exit_signal else None,
                  done.stdout, done.stderr)


async def read_until(stream: asyncssh.SSHReader[bytes], pattern: bytes) -> bytes:
    """Read from ``stream`` until ``pattern`` (a regex) matches what was read."""
    seen = b""
    async def _loop() -> bytes:
        nonlocal seen
        while not re.search(pattern, seen):
            chunk = await stream.read(4096)
            if not chunk:
                raise AssertionError(f"EOF before {pattern!r}; got {seen!r}")
            seen += chunk
        return seen
    try:
        return await asyncio.wait_for(_loop(), WAIT)
    except TimeoutError:
        raise AssertionError(f"no {pattern!r} in {seen!r}") from None


# -- exec ----------------------------------------------------------------------


async def test_exec_keeps_stdout_and_stderr_apart(node: Node) -> None:
    result = await run(node, "echo out; echo err >&2")
    assert (result.stdout, result.stderr, result.exit_status) == (b"out\n", b"err\n", 0)


async def test_exit_status_and_audit_events(node: Node) -> None:
    result = await run(node, "exit 7")
    assert result.exit_status == 7
    names = [name for name, _ in node.events]
    assert names == ["session.start", "exec", "session.end"]
    start, exec_, end = (fields for _, fields in node.events)
    assert start["pty"] is False and start["command"] == "exit 7" and start["login"] == ME
    assert exec_["command"] == "exit 7"
    assert end["exit_status"] == 7 and end["exit_signal"] is None
    assert len({f["session_id"] for _, f in node.events}) == 1
    uuid.UUID(str(start["session_id"]))


async def test_command_with_dash_arguments_is_passed_as_is(node: Node) -> None:
    result = await run(node, "printf '[%s]' -n --help -c")
    assert result.stdout == b"[-n][--help][-c]"


async def test_stdin_is_piped_and_eof_ends_it(node: Node) -> None:
    result = await run(node, "cat", input=b"hello\nworld\n")
    assert (result.stdout, result.exit_status) == (b"hello\nworld\n", 0)


async def test_large_stdin_is_flow_controlled(node: Node) -> None:
    size = 20_000_000
    result = await run(node, "wc -c", input=bytes(size))
    assert int(result.stdout) == size


class _Tap:
    """A recorder as the node's, which a test drives: the output it saw, what was asked
    of it, and the session's hooks it was given."""

    def __init__(self, info: SessionInfo) -> None:
        self.info = info
        self.calls: list[str] = []
        self.sent = 0
        self.output_seen = asyncio.Event()

    def output(self, data: bytes) -> None:
        self.sent += len(data)
        self.output_seen.set()

    def resize(self, cols: int, rows: int) -> None:
        pass

    def end(self, then: Callable[[], None] | None = None) -> None:
        self.calls.append("end")
        if then is not None:
            then()

    def discard(self) -> None:
        self.calls.append("discard")


def _tapped(node: Node) -> list[_Tap]:
    """The taps of the node's sessions from now on, as they are made."""
    taps: list[_Tap] = []

    def make(info: SessionInfo) -> _Tap:
        taps.append(_Tap(info))
        return taps[-1]

    node.policy = replace(node.policy, tap_factory=make)
    return taps


async def test_large_output_streams_with_backpressure(node: Node) -> None:
    taps = _tapped(node)
    size = 50_000_000
    async with node.connect() as conn:
        proc = await conn.create_process(f"head -c {size} /dev/zero", encoding=None)
        # Not reading: the child must stall once the SSH window and our
        # send buffer are full, instead of the server buffering 50 MB.
        await asyncio.sleep(0.3)
        [tap] = taps
        assert tap.sent < 8_000_000  # ~3.3 MB: the client's window and buffer, plus ~64 KiB
        received = 0
        async def drain() -> None:
            nonlocal received
            while chunk := await proc.stdout.read(1 << 20):
                received += len(chunk)
        await asyncio.wait_for(drain(), 30)
        done = await asyncio.wait_for(proc.wait(), WAIT)
    assert received == tap.sent == size
    assert done.exit_status == 0


async def test_a_session_its_tap_ends_is_hung_up_whatever_the_client_does(
        node: Node, tmp_path: Path) -> None:
    """record_session strict ends a session whose recording failed: its child is hung up
    at once, even while the client reads nothing (the channel's close then waits on it)."""
    taps = _tapped(node)
    pidfile = tmp_path / "pid"
    async with node.connect() as conn:
        proc = await conn.create_process(
            f"echo $$ > {pidfile}; head -c 50000000 /dev/zero; sleep 30", encoding=None)
        [tap] = taps
        await asyncio.wait_for(tap.output_seen.wait(), WAIT)
        proc.channel.pause_reading()  # the client reads nothing now (nor the close)
        await asyncio.sleep(0.2)  # the node's send buffer fills
        tap.info.end_session()
        pid = int(pidfile.read_text())
        for _ in range(100):
            if not Path(f"/proc/{pid}").exists() or \
                    Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z":
                break
            await asyncio.sleep(0.05)
        else:
            pytest.fail("the session's shell still runs 5 s after the session was ended")
        assert tap.calls == ["end"]
        ends = [f for e, f in node.events if e == "session.end"]
        assert ends == [{"session_id": ends[0]["session_id"], "exit_status": 255,
                         "exit_signal": None, "core_dumped": False, "disconnected": False}]
        proc.close()


async def test_a_session_whose_child_cannot_start_keeps_no_recording(node: Node) -> None:
    taps = _tapped(node)
    result = await run(node, "echo a\0b")  # a NUL: no process can take it as argv
    assert result.exit_status == 1
    assert [tap.calls for tap in taps] == [["discard"]]
    assert [e for e, _ in node.events] == []


async def test_a_subsystem_other_than_sftp_is_refused(node: Node) -> None:
    async with node.connect() as conn:
        with pytest.raises(asyncssh.ChannelOpenError):
            await asyncio.wait_for(conn.create_process(subsystem="netconf"), WAIT)
        # The connection stays usable.
        result = await asyncio.wait_for(conn.run("echo still here"), WAIT)
        assert result.stdout == "still here\n"


async def test_sftp_refused_by_the_policy_says_why(node: Node) -> None:
    node.policy = replace(node.policy, file_transfer_refused="file transfer is not allowed: "
                          "role r sets options.file_transfer: false")
    async with node.connect() as conn:
        proc = await asyncio.wait_for(conn.create_process(subsystem="sftp", encoding=None),
                                      WAIT)
        done = await asyncio.wait_for(proc.wait(), WAIT)
    assert done.exit_status == 1
    assert done.stderr == b"file transfer is not allowed: role r sets " \
        b"options.file_transfer: false\n"
    assert [e for e, _ in node.events] == ["sftp.denied"]


async def test_sftp_runs_as_the_login_and_audits_each_file(
        node: Node, throwaway_user: str, tmp_path: Path) -> None:
    home = Path(pwd.getpwnam(throwaway_user).pw_dir)
    home.mkdir()
    shutil.chown(home, throwaway_user)
    try:
        await _transfer_and_check(node, throwaway_user, home, tmp_path)
    finally:
        shutil.rmtree(home)


async def _transfer_and_check(node: Node, throwaway_user: str, home: Path,
                              tmp_path: Path) -> None:
    node.policy = replace(node.policy, file_transfer_refused=None)
    local = tmp_path / "up.bin"
    local.write_bytes(os.urandom(300_000))
    async with node.connect(throwaway_user) as conn, conn.start_sftp_client() as sftp:
        await asyncio.wait_for(sftp.put(str(local), "up.bin"), WAIT)
        await asyncio.wait_for(sftp.get("up.bin", str(tmp_path / "down.bin")), WAIT)
        with pytest.raises(asyncssh.SFTPPermissionDenied):
            await asyncio.wait_for(sftp.put(str(local), "/root/not-yours"), WAIT)
    assert (tmp_path / "down.bin").read_bytes() == local.read_bytes()
    assert (home / "up.bin").stat().st_uid == pwd.getpwnam(throwaway_user).pw_uid
    assert not Path("/root/not-yours").exists()
    await asyncio.wait_for(_until(lambda: any(e == "session.end" for e, _ in node.events)),
                           WAIT)
    ops = [{k: f[k] for k in ("action", "path", "bytes_read", "bytes_written", "error")}
           for e, f in node.events if e == "sftp"]
    assert ops == [
        {"action": "write", "path": "up.bin", "bytes_read": 0, "bytes_written": 300_000,
         "error": ""},
        {"action": "read", "path": "up.bin", "bytes_read": 300_000, "bytes_written": 0,
         "error": ""},
        {"action": "write", "path": "/root/not-yours", "bytes_read": 0, "bytes_written": 0,
         "error": "Permission denied"},
    ]
    start = next(f for e, f in node.events if e == "session.start")
    assert start["subsystem"] == "sftp" and start["recorded"] is False
    assert "exec" not in [e for e, _ in node.events]


async def test_sftp_runs_sftp_server_not_what_the_logins_shell_files_say(
        node: Node, throwaway_user: str) -> None:
    # The login's shell reads its rc files (bash reads ~/.bashrc when SSH_CLIENT is
    # set): run through it, the sftp subsystem would run any program the login names
    # there, unrecorded and with no file operation audited.
    home = Path(pwd.getpwnam(throwaway_user).pw_dir)
    home.mkdir()
    subprocess.run(["usermod", "-s", "/bin/bash", throwaway_user], check=True, timeout=WAIT)
    (home / ".bashrc").write_text("exec sh -c 'echo not sftp-server'\n")
    shutil.chown(home, throwaway_user)
    node.policy = replace(node.policy, file_transfer_refused=None)
    try:
        async with node.connect(throwaway_user) as conn:
            proc = await asyncio.wait_for(
                conn.create_process(subsystem="sftp", encoding=None), WAIT)
            proc.stdin.write(b"\0\0\0\5\1\0\0\0\3")  # SSH_FXP_INIT, version 3
            head = await asyncio.wait_for(proc.stdout.readexactly(5), WAIT)
            proc.close()
    finally:
        shutil.rmtree(home)
    assert head[4] == 2, head  # SSH_FXP_VERSION: sftp-server answered


@pytest.mark.parametrize(("command", "transfer"), [
    ("scp -t -- up.txt", True), ("scp -v -r -d -t -- dir", True), ("scp -f x", True),
    ("/usr/bin/scp -pf -- x", True), ("scp -- -t", False), ("scp a b", False),
    ("echo scp -t", False), ("scp 'unbalanced", False), (None, False), ("", False),
])
def test_what_is_scps_own_transfer_command(command: str | None, transfer: bool) -> None:
    assert is_scp_transfer(command) is transfer


async def _until(check: Callable[[], bool]) -> None:
    while not check():
        await asyncio.sleep(0.05)


# -- signals and hang-up -------------------------------------------------------


@pytest.mark.parametrize("name", ["TERM", "INT", "KILL", "HUP"])
async def test_signal_is_forwarded(node: Node, name: str) -> None:
    async with node.connect() as conn:
        proc = await conn.create_process("echo ready; exec sleep 30", encoding=None)
        await read_until(proc.stdout, b"ready")
        proc.send_signal(name)
        done = await asyncio.wait_for(proc.wait(), WAIT)
    assert done.exit_signal is not None and done.exit_signal[0] == name
    assert node.events[-1][1]["exit_signal"] == name


async def test_disconnect_hangs_up_and_reaps_the_child(node: Node) -> None:
    async with node.connect() as conn:
        proc = await conn.create_process("echo $$; exec sleep 30", encoding=None)
        pid = int((await read_until(proc.stdout, rb"\d+\n")).decode())
    for _ in range(100):  # the child is gone, zombie included, within ~5 s
        if not os.path.exists(f"/proc/{pid}"):
            break
        await asyncio.sleep(0.05)
    else:
        raise AssertionError(f"child {pid} still exists after the client left")
    assert node.events[-1][0] == "session.end" and node.events[-1][1]["disconnected"] is True


# -- PTY ---------------------------------------------------------------------------


async def test_pty_exec_has_a_terminal_of_the_requested_size(node: Node) -> None:
    result = await run(node, "tty; stty size; echo $TERM; test -t 0 && echo ctty-ok </dev/tty",
                       term_type="xterm-256color", term_size=(100, 40))
    out = result.stdout.decode()
    assert re.search(r"^/dev/pts/\d+\r$", out, re.M), out
    assert "40 100\r\n" in out and "xterm-256color\r\n" in out and "ctty-ok" in out
    assert "\n" in out and not result.stderr  # a PTY merges stderr into stdout


async def test_pty_shell_resize_reaches_the_child(node: Node) -> None:
    async with node.connect() as conn:
        proc = await conn.create_process(
            term_type="xterm", term_size=(80, 24), encoding=None)
        proc.stdin.write(b"stty size\n")
        await read_until(proc.stdout, rb"24 80")
        proc.change_terminal_size(132, 50)
        proc.stdin.write(b"stty size\n")
        await read_until(proc.stdout, rb"50 132")
        proc.stdin.write(b"exit 3\n")
        done = await asyncio.wait_for(proc.wait(), WAIT)
    assert done.exit_status == 3
    # Not an audit event (the recording holds it): a user resizing in a loop could
    # otherwise fill the node's spool and the audit log.
    assert [e for e, _ in node.events] == ["session.start", "session.end"]
    start = node.events[0][1]
    assert start["pty"] is True and start["command"] is None


async def test_resize_sends_sigwinch_to_the_foreground_job(node: Node) -> None:
    async with node.connect() as conn:
        proc = await conn.create_process(
            "trap 'echo WINCH; stty size' WINCH; echo ready; while sleep 0.02; do :; done",
            term_type="xterm", term_size=(80, 24), encoding=None)
        await read_until(proc.stdout, b"ready")
        proc.change_terminal_size(90, 30)
        await read_until(proc.stdout, rb"WINCH\r\n30 90\r\n")
        proc.send_signal("TERM")
        await asyncio.wait_for(proc.wait(), WAIT)


async def test_login_shell_is_started_with_a_dash(node: Node) -> None:
    shell = os.path.basename(pwd.getpwnam(ME).pw_shell)
    async with node.connect() as conn:
        proc = await conn.create_process(term_type="xterm", encoding=None)
        proc.stdin.write(b"echo \"[$0]\"; exit\n")
        await read_until(proc.stdout, rb"\[-" + re.escape(shell.encode()) + rb"\]")
        await asyncio.wait_for(proc.wait(), WAIT)


async def test_pty_output_is_drained_after_the_child_exits(node: Node) -> None:
    async with node.connect() as conn:
        proc = await conn.create_process("seq 1 300000", term_type="xterm", encoding=None)
        await asyncio.sleep(0.2)  # the child exits while the channel is still full
        out = b""
        async def drain() -> None:
            nonlocal out
            while chunk := await proc.stdout.read(1 << 20):
                out += chunk
        await asyncio.wait_for(drain(), WAIT)
        done = await asyncio.wait_for(proc.wait(), WAIT)
    assert done.exit_status == 0
    assert out.endswith(b"\r\n299999\r\n300000\r\n") and out.count(b"\n") == 300000


async def test_stdin_eof_on_a_pty_ends_cat(node: Node) -> None:
    async with node.connect() as conn:
        proc = await conn.create_process("cat", term_type="xterm", encoding=None)
        proc.stdin.write(b"abc\n")
        await read_until(proc.stdout, b"abc\r\n")
        proc.stdin.write_eof()
        done = await asyncio.wait_for(proc.wait(), WAIT)
    assert done.exit_status == 0


async def test_pty_refused_when_not_permitted(node: Node, client_key_file: Path) -> None:
    node.policy = replace(node.policy, permit_pty=False)
    status, _, err = await openssh(node, client_key_file, "-tt", "tty")
    # OpenSSH gives up when a PTY it was told to get (-t) is refused.
    assert status == 255 and b"PTY allocation request failed" in err
    assert not any(fields.get("pty") for _, fields in node.events)
    async with node.connect() as conn:
        with pytest.raises(asyncssh.ChannelOpenError):
            await asyncio.wait_for(conn.create_process("tty", term_type="xterm"), WAIT)


# -- who runs it, and with what environment ------------------------------------------


@pytest.fixture
def throwaway_user() -> Iterator[str]:
    if not IS_ROOT or shutil.which("useradd") is None:
        pytest.skip("needs root and useradd")
    name = "gh-" + uuid.uuid4().hex[:10]
    subprocess.run(["useradd", "-M", "-d", f"/nonexistent-{name}", "-s", "/bin/sh", name],
                   check=True, timeout=WAIT)
    try:
        yield name
    finally:
        subprocess.run(["userdel", name], check=False, timeout=WAIT)


async def test_the_session_s_terminal_belongs_to_its_login(node: Node,
                                                          throwaway_user: str) -> None:
    """As sshd hands it over (owner the login, group tty, mode 620): the login can open
    its own terminal by name (screen, gpg's pinentry, write/mesg need that)."""
    result = await run(node, 'stat -c "%U %G %a" "$(tty)"; echo x > "$(tty)" && echo ok',
                       user=throwaway_user, term_type="xterm", term_size=(80, 24))
    lines = result.stdout.decode().replace("\r", "").splitlines()
    assert lines[0] == f"{throwaway_user} tty 620", lines
    assert lines[-1] == "ok", lines


async def test_runs_as_another_login_with_a_clean_environment(
    node: Node, throwaway_user: str
) -> None:
    result = await run(
        node,
        'id -un; id -u; pwd; echo "$HOME|$USER|$LOGNAME|$SHELL|$PATH"; '
        'echo "${SSH_CLIENT:+set}|${SSH_CONNECTION:+set}|${SSH_TTY-unset}"; '
        'env | grep -c "^GATEHOUSE\\|^PYTEST" || true; id -G; id -g',
        user=throwaway_user)
    lines = result.stdout.decode().splitlines()
    assert lines[0] == throwaway_user and lines[1] != "0"
    assert lines[2] == "/"  # its home does not exist
    assert lines[3] == f"/nonexistent-{throwaway_user}|{throwaway_user}|{throwaway_user}|" \
        f"/bin/sh|{DEFAULT_PATH}"
    assert lines[4] == "set|set|unset"
    assert lines[5] == "0"  # nothing leaks from the server's environment
    entry = pwd.getpwnam(throwaway_user)  # its own groups only, none of the node's
    assert sorted(map(int, lines[6].split())) == sorted(os.getgrouplist(throwaway_user,
                                                                        entry.pw_gid))
    assert int(lines[7]) == entry.pw_gid


async def test_unknown_login_is_refused_with_a_clear_message(node: Node) -> None:
    result = await run(node, "echo hi", user="no-such-user-gh")
    assert result.exit_status == 1 and result.stdout == b""
    assert result.stderr == b"login 'no-such-user-gh' does not exist on this node\n"


async def test_session_refuses_a_login_it_cannot_switch_to(
    node: Node, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 424242)  # "not root"
    result = await run(node, "echo hi")
    assert result.exit_status == 1 and result.stdout == b""
    assert result.stderr.startswith(f"cannot run as login '{ME}': the node runs as user".encode())
    assert not node.events  # nothing ran


async def test_client_environment_is_filtered(node: Node) -> None:
    command = 'echo "$TERM|$LANG|$LC_ALL|${LD_PRELOAD-unset}|$PATH|${FOO-unset}"'
    env = {"TERM": "vt100", "LANG": "C.UTF-8", "LC_ALL": "C", "LD_PRELOAD": "/tmp/x.so",
           "PATH": "/evil", "FOO": "bar"}
    # PATH: ours, though the login's ~/.bashrc may prepend to it (bash reads
    # it when started by an SSH server, seeing SSH_CLIENT).
    result = await run(node, command, env=env)
    assert re.fullmatch(rf"vt100\|C\.UTF-8\|C\|unset\|.*{DEFAULT_PATH}\|unset\n",
                        result.stdout.decode()), result.stdout
    node.policy = replace(node.policy, env_allowed=frozenset({"FOO", "LD_*"}))
    result = await run(node, command, env=env)
    # TERM: not the client's (the login's shell files may set a default).
    assert re.fullmatch(rf"(?!vt100)[^|]*\|\|\|unset\|.*{DEFAULT_PATH}\|bar\n",
                        result.stdout.decode()), result.stdout


def test_filter_client_env_rules() -> None:
    env = {"LANG": "C", "LC_TIME": "C", "BASH_FUNC_x%%": "() { :; }", "1X": "y",
           "SSH_AUTH_SOCK": "/x", "HOME": "/x", "NO_COLOR": "1", "TZ": "UTC"}
    assert filter_client_env(env, None) == {"LANG": "C", "LC_TIME": "C", "NO_COLOR": "1"}
    assert filter_client_env(env, frozenset({"*"})) == {
        "LANG": "C", "LC_TIME": "C", "NO_COLOR": "1", "TZ": "UTC"}
    assert filter_client_env({"A": "x\0y"}, frozenset({"A"})) == {}


def test_check_can_run_as() -> None:
    check_can_run_as(ME)
    with pytest.raises(AccessDenied, match="login 'no-such-user-gh' does not exist on this node"):
        check_can_run_as("no-such-user-gh")


def test_check_can_run_as_refuses_others_when_not_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 424242)
    with pytest.raises(AccessDenied, match=r"cannot run as login 'root': the node runs as "
                                           r"user '424242', not root"):
        check_can_run_as("root")


# -- OpenSSH's client ---------------------------------------------------------------


async def test_openssh_exec(node: Node, client_key_file: Path) -> None:
    status, out, err = await openssh(
        node, client_key_file, "echo hi; echo oops >&2; printf '[%s]' -n --x; exit 3")
    assert (status, out, err) == (3, b"hi\n[-n][--x]", b"oops\n")


async def test_openssh_stdin_and_env(node: Node, client_key_file: Path) -> None:
    status, out, _ = await openssh(
        node, client_key_file, "-o", "SetEnv=LANG=C.UTF-8 LD_PRELOAD=/x.so",
        'cat; echo "$LANG|${LD_PRELOAD-unset}"', stdin=b"piped\n")
    assert (status, out) == (0, b"piped\nC.UTF-8|unset\n")


async def test_openssh_pty_and_subsystem(node: Node, client_key_file: Path) -> None:
    status, out, _ = await openssh(node, client_key_file, "-tt", "tty; stty size")
    assert status == 0 and re.match(rb"/dev/pts/\d+\r\n\d+ \d+\r\n", out), out
    status, _, err = await openssh(node, client_key_file, "-s", "netconf")
    assert status != 0 and b"subsystem request failed" in err
