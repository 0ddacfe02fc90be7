"""`gsh ssh`: an SSH session to a node through the proxy, end to end with the node.

The node is verified by its cluster's host CA (Profile.host_ca_for says which CA
may vouch for the name), and its certificate must name the host id of the node the
proxy resolved and dialed (another host's certificate may carry the same node name,
e.g. a removed node's); the user authenticates with the certificate from `gsh login`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import stat
import sys
import termios
import tty
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import NoReturn

from gatehouse._sys.fdio import write_all
from gatehouse._sys.streams import PUMP_CHUNK
from gatehouse.client import leafcerts
from gatehouse.client._asyncssh import asyncssh
from gatehouse.client.dialer import ProxyTunnel
from gatehouse.client.forwardspec import PortForward
from gatehouse.client.portforward import forwarder
from gatehouse.client.profile import Profile
from gatehouse.errors import AccessDenied, ConnectionProblem
from gatehouse.pki import sshcert
from gatehouse.wire.names import DENIED_BANNER

# Ciphers in order of preference, for gsh and for OpenSSH through `gsh config`. AES-GCM
# first: the node's asyncssh runs it through cryptography in one call a packet
# (_sys/sshgcm), chacha20-poly1305 in several (OpenSSH's own first choice: in the bench,
# 0.6-1.3 s more of the node's CPU per GiB).
CIPHERS = ("aes128-gcm@openssh.com", "chacha20-poly1305@openssh.com", "aes256-gcm@openssh.com")

__all__ = ["SESSION_MAX_PACKET", "SESSION_WINDOW", "connect_node", "run_ssh"]

# The node may send up to 256 KiB of data per packet (asyncssh allows 1 KiB more for
# the packet's own bytes): a stream costs a few Python calls per 256 KiB instead of
# per 32 KiB. A Gatehouse node reads its child 256 KiB at a time. The window (16 MiB
# in flight) spans the four event loops of a leaf's path: with 2 MiB the node waited
# for window adjustments, and a leaf stream ran at ~265 MB/s instead of ~360.
SESSION_MAX_PACKET = 256 * 1024
SESSION_WINDOW = 64 * SESSION_MAX_PACKET
# Seconds a session that ended without an exit status waits for its connection to end
# too, to say why if the node ended it (a disconnect with a reason).
ENDED_WAIT = 2.0
_NOT_PRINTABLE = re.compile(r"[^\x20-\x7e\u00a0-\uffff]")  # a node's words, no control bytes


@contextlib.contextmanager
def _raw_terminal(fd: int) -> Iterator[None]:
    saved = termios.tcgetattr(fd)
    try:
        tty.setraw(fd, termios.TCSADRAIN)  # keep what was typed ahead (as OpenSSH does)
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


async def connect_node(profile: Profile, login: str, node: str, host_ca: str,
                   tunnel: ProxyTunnel) -> asyncssh.SSHClientConnection:
    """The SSH connection to ``node`` as ``login`` over ``tunnel``, the node verified by
    ``host_ca`` and the host id the proxy dialed; AccessDenied or ConnectionProblem."""
    ident = profile.identity
    key = asyncssh.import_private_key(ident.key_file.read_bytes())
    # A leaf's own certificate (`gsh login LEAF`, leaf-local logins) for its nodes.
    cluster = tunnel.cluster or profile.cluster
    cert_line = leafcerts.ssh_cert_line(profile, cluster)
    cert = asyncssh.import_certificate(cert_line)
    ca = asyncssh.import_public_key(host_ca)
    # A proxy older than the host id in its reply leaves the node's name to be checked.
    host_id = (await tunnel.reply()).host_id
    words = _NodeWords()
    try:
        return await asyncssh.connect(
            node, 22, tunnel=tunnel, username=login, client_keys=[(key, cert)],
            client_factory=lambda: words,
            known_hosts=([], [ca], []), host_key_alias=host_id or None,
            agent_path=None, config=None,
            preferred_auth=["publickey"], connect_timeout=30,
            encryption_algs=list(CIPHERS),
        )
    except asyncssh.PermissionDenied as exc:
        principals = sshcert.decode(sshcert.from_openssh_line(cert_line)).principals
        raise AccessDenied(_refusal(login, node, principals, words.denied)
                           + leafcerts.missing_hint(profile, cluster)) from exc
    except asyncssh.HostKeyNotVerifiable as exc:
        which = f"is host {host_id}, the node the proxy dialed" \
            if host_id else "belongs to the cluster"
        raise AccessDenied(f"node {node} could not prove it {which}: {exc.reason}") from exc
    except (asyncssh.Error, OSError) as exc:
        raise ConnectionProblem(f"ssh to {node} failed: {exc}") from exc


def _user_cert(profile: Profile) -> sshcert.Certificate:
    return sshcert.decode(sshcert.from_openssh_line(profile.identity.ssh_cert_line()))


class _NodeWords(asyncssh.SSHClient):
    """Keeps the reason a Gatehouse node gives with its refusal (wire.names.DENIED_BANNER),
    and why the connection ended if the node ended it (a disconnect with a reason:
    access revoked mid-session), which asyncssh does not hand to the session."""

    def __init__(self) -> None:
        self.denied = ""
        self.lost: Exception | None = None

    def auth_banner_received(self, msg: str, lang: str) -> None:
        if msg.startswith(DENIED_BANNER):
            self.denied = _NOT_PRINTABLE.sub("?", msg[len(DENIED_BANNER):].strip())[:500]

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = exc


def _refusal(login: str, node: str, principals: Sequence[str], reason: str) -> str:
    """Why the node refused the certificate: a login not among its principals is always
    refused (sshd(8) AuthorizedPrincipals, Gatehouse's node alike); else the reason the
    node sent, or, from a node that sends none, where to find it."""
    if login not in principals:
        logins = ", ".join(p for p in principals if not p.startswith("-")) or "none"
        return (f"access denied to {login}@{node}: {login} is not among the logins of your "
                f"certificate ({logins}); an admin grants logins through your roles")
    return (f"access denied to {login}@{node}: {reason or 'the node refused the certificate'} "
            "(the node's audit log has the details)")


def _pollable(fd: int) -> bool:
    """Pipes, sockets and terminals can be watched by epoll; files and /dev/null cannot."""
    mode = os.fstat(fd).st_mode
    return stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode) or os.isatty(fd)


async def _read_chunks(fd: int) -> AsyncIterator[bytes]:
    loop = asyncio.get_running_loop()
    if not _pollable(fd):
        while data := await loop.run_in_executor(None, os.read, fd, PUMP_CHUNK):
            yield data
        return
    reader = asyncio.StreamReader(limit=PUMP_CHUNK)
    transport, _ = await loop.connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(os.dup(fd), "rb", 0))
    try:
        while data := await reader.read(PUMP_CHUNK):
            yield data
    finally:
        transport.close()


async def _pump_stdin(process: asyncssh.SSHClientProcess[bytes]) -> None:
    try:
        async for data in _read_chunks(0):
            process.stdin.write(data)
            await process.stdin.drain()
        process.stdin.write_eof()
    except (asyncssh.Error, BrokenPipeError, ConnectionError):
        pass


async def _pump_out(stream: asyncssh.SSHReader[bytes], fd: int) -> None:
    """Copy to a local fd; a blocking write only stalls this one-session client."""
    while data := await stream.read(PUMP_CHUNK):
        try:
            write_all(fd, data)
        except OSError as exc:  # e.g. `gsh ssh node yes | head -1`: the reader is gone
            name = "stdout" if fd == 1 else "stderr"
            raise ConnectionProblem(f"cannot write the session's output to {name}: "
                                    f"{exc.strerror or exc}") from exc


async def run_ssh(profile: Profile, login: str, node: str, command: list[str], *,
                  host_ca: str, force_tty: bool, tunnel: ProxyTunnel,
                  forwards: Sequence[PortForward] = (), no_command: bool = False) -> int:
    """Run the session over ``tunnel`` (dialing ``node``, verified by ``host_ca``: its
    cluster's, from Profile.host_ca_for), with ``forwards`` listening meanwhile (and
    no session at all with ``no_command``, until the connection ends); returns the
    remote exit status (or 255 when it ended otherwise). ConnectionProblem, one line,
    when the connection breaks."""
    if forwards:
        _check_forwarding(profile, forwards[0].flag)
    conn = await connect_node(profile, login, node, host_ca, tunnel)
    owner = conn.get_owner()  # asyncssh forgets it once the connection is closed
    status = 255
    try:
        async with conn:
            forwarders = [forwarder(conn, f) for f in forwards]
            try:
                for each in forwarders:
                    await each.open()
                if no_command:
                    await conn.wait_closed()
                    raise ConnectionProblem(f"the connection to {node} was closed")
                exit_status = await _session(conn, command, force_tty)
            finally:
                for each in forwarders:
                    await each.aclose()
            if exit_status is None:  # no exit status: did the node end the connection?
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(conn.wait_closed(), ENDED_WAIT)
                if isinstance(owner, _NodeWords) and isinstance(owner.lost, asyncssh.Error):
                    raise owner.lost  # it did, saying why (access revoked)
            status = 255 if exit_status is None else exit_status
    except* (asyncssh.Error, OSError) as lost:
        # e.g. the trust disabled or the daemon stopped mid-session, or a request
        # larger than the node accepts ("Max packet size exceeded"): one line, 255.
        _lost(node, lost.exceptions[0])
    return status


def _lost(node: str, exc: BaseException) -> NoReturn:
    reason = exc.reason if isinstance(exc, asyncssh.Error) else str(exc)
    raise ConnectionProblem(f"the connection to {node} was lost: "
                            f"{reason or type(exc).__name__}") from exc


def _check_forwarding(profile: Profile, flag: str) -> None:
    """AccessDenied unless the certificate permits port forwarding (the node requires
    it, whatever its roles say; the auth grants it only where a role allows it)."""
    if "permit-port-forwarding" not in _user_cert(profile).extensions:
        raise AccessDenied(f"port forwarding ({flag}) is not allowed: your certificate does not "
                           "permit it (no role of yours sets options.port_forwarding)")


async def _session(conn: asyncssh.SSHClientConnection, command: list[str],
                   force_tty: bool) -> int | None:
    """The command (or a shell) with this terminal's stdin, stdout and stderr; its exit
    status (255 when a signal ended it), or None if the session ended without either."""
    interactive = not command
    want_pty = force_tty or (interactive and sys.stdin.isatty())
    term_size = os.get_terminal_size() if want_pty and sys.stdout.isatty() else (80, 24)
    process = await conn.create_process(
        " ".join(command) if command else None,
        term_type=os.environ.get("TERM", "xterm") if want_pty else None,
        term_size=(term_size[0], term_size[1]) if want_pty else None,
        encoding=None, window=SESSION_WINDOW, max_pktsize=SESSION_MAX_PACKET,
    )
    loop = asyncio.get_running_loop()
    resize = want_pty and sys.stdout.isatty()
    if resize:
        loop.add_signal_handler(
            signal.SIGWINCH,
            lambda: process.change_terminal_size(*os.get_terminal_size()),
        )
    raw = contextlib.nullcontext() if not (want_pty and sys.stdin.isatty()) \
        else _raw_terminal(0)
    try:
        with raw:
            async with asyncio.TaskGroup() as tg:
                stdin_task = tg.create_task(_pump_stdin(process))
                out = tg.create_task(_pump_out(process.stdout, 1))
                err = tg.create_task(_pump_out(process.stderr, 2))
                await process.wait_closed()
                await out
                await err
                stdin_task.cancel()
    finally:
        if resize:
            loop.remove_signal_handler(signal.SIGWINCH)
    status = process.exit_status
    if status is not None and status >= 0:
        return status
    return 255 if process.exit_signal is not None else None
