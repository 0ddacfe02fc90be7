"""The node's SSH front door: who may log in as whom, decided at login and again for
every channel the connection asks for.

asyncssh checks the certificate's CA signature, principals and validity;
Gatehouse's own codec (sshcert) reads the custom extensions (roles, traits)
that asyncssh cannot, and rbac decides. Every refusal is logged with its
reason and audited; anything not explicitly allowed is denied.

A decision does not outlive what it was made from: each new session or forward
decides again (the certificate may have expired, the user or a role gone, a trust
disabled), and every change of trust the auth pushes is checked against each open
connection, which is closed if its login is no longer allowed (``recheck``); so is a
connection whose certificate's validity ends (checked again at that moment). A
connection holds at most MAX_SESSIONS sessions at once (sshd's MaxSessions), and
gets MAX_AUTH_TRIES refused certificates before it is cut off (sshd's MaxAuthTries):
a stranger cannot turn one connection into an audit flood, and the refusals of
certificates no trusted CA signed fold per source across connections (node.strangers).
"""

from __future__ import annotations

import asyncio
import logging
import pwd
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import asyncssh

from gatehouse import rbac, rolemap
from gatehouse._sys import sshforward, sshgcm
from gatehouse._sys.sshsend import LeanSends
from gatehouse.clock import Clock
from gatehouse.errors import AccessDenied, BadParameter
from gatehouse.node import remoteforward
from gatehouse.node.session import (
    SessionInfo,
    SessionPolicy,
    SessionTap,
    check_can_run_as,
    make_session_factory,
)
from gatehouse.pki import sshcert
from gatehouse.types.template import UserTraits
from gatehouse.wire.names import DENIED_BANNER
from gatehouse.wire.trust import TrustSnapshot

__all__ = ["Grant", "NodeConnection", "NodeSSHServer", "SSHFront"]

sshgcm.install()  # AES-GCM packets with fewer copies (see gatehouse._sys.sshgcm)
sshforward.install()  # forwards that lose no early bytes and close (gatehouse._sys.sshforward)
log = logging.getLogger(__name__)

MAX_SESSIONS = 10  # open sessions on one connection (sshd's MaxSessions default)
MAX_AUTH_TRIES = 6  # refused certificates before the connection is closed (sshd's default)
# Seconds: a far expiry is looked at again this much later at most. The timer runs on the
# loop's monotonic clock; a wall clock stepped forward (NTP, a resumed VM) is noticed at
# the next look, so a session outlives its certificate by a minute at most.
EXPIRY_CHECK_MAX = 60.0

Audit = Callable[[str, dict[str, Any]], None]
Record = Callable[["Grant", SessionInfo], SessionTap | None]  # a recorder for each session
ServerFactory = Callable[[str], "NodeSSHServer"]  # (peer, "" if its socket says) -> server


class _UntrustedCA(AccessDenied):
    """A certificate no CA this node trusts signed: a stranger's."""


@dataclass(frozen=True)
class Grant:
    """What an authenticated connection may do."""

    user: str
    login: str
    roles: tuple[str, ...]
    cluster: str
    port_forwarding: bool
    file_transfer: rbac.Decision
    recording_required: str | None  # why, if a session must not run unrecorded
    permit_pty: bool
    correlation_id: str
    valid_before: int  # the certificate's end (Unix seconds)


class NodeSSHServer(asyncssh.SSHServer):
    """One per connection (asyncssh's server_factory)."""

    def __init__(
        self,
        *,
        trust: Callable[[], TrustSnapshot],
        labels: dict[str, str],
        clock: Clock,
        audit: Audit,
        record: Record,
        strangers: Callable[[dict[str, Any]], None],
        peer: str = "",
    ) -> None:
        self._record = record
        self._strangers = strangers  # refusals of certificates no trusted CA signed
        self._trust = trust
        self._labels = labels
        self._clock = clock
        self._audit = audit
        # Where the connection comes from when its socket cannot say: on a tunnel stream,
        # the user's address as the proxy saw it.
        self._peer = peer
        self.grant: Grant | None = None
        self._granted: tuple[str, bytes] | None = None  # the (login, certificate) allowed
        self._refusals = 0  # certificates refused on this connection
        self._sessions = 0  # sessions open on this connection
        self._conn: asyncssh.SSHServerConnection | None = None
        self._remote_listeners = 0  # `ssh -R` listeners granted on this connection
        self._expiry: asyncio.TimerHandle | None = None  # the check when the certificate ends

    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        self._conn = conn
        peer = conn.get_extra_info("peername")
        if peer:
            self._peer = f"{peer[0]}:{peer[1]}"

    def begin_auth(self, username: str) -> bool:
        return True  # always authenticate; nothing is allowed without a certificate

    def public_key_auth_supported(self) -> bool:
        return True

    def password_auth_supported(self) -> bool:
        return False

    def validate_public_key(self, username: str, key: asyncssh.SSHKey) -> bool:
        return False  # plain keys never; certificates only

    def validate_ca_key(self, username: str, key: asyncssh.SSHKey) -> bool:
        line = key.export_public_key("openssh").decode().split()
        return " ".join(line[:2]) in self._trust().user_ca_lines

    def authorize(self, login: str, key_data: bytes) -> bool:
        """Decide from the raw certificate; True only when every check passes."""
        self.grant, self._granted = None, None
        if self._refusals >= MAX_AUTH_TRIES:
            return False  # the connection is closing
        try:
            self.grant = self._decide(login, key_data)
        except (AccessDenied, BadParameter) as exc:
            log.warning("ssh access denied login=%s peer=%s reason=%r", login, self._peer, str(exc))
            refusal = {"login": login, "remote_addr": self._peer, "message": str(exc),
                       "user": _key_id(key_data)}
            if isinstance(exc, (_UntrustedCA, BadParameter)):  # a stranger's: folded
                self._strangers(refusal)
            else:
                self._audit("auth", refusal)
            self._refusals += 1
            if self._conn is not None:  # the client shows it (gsh, and ssh(1) on stderr)
                self._conn.send_auth_banner(f"{DENIED_BANNER}{exc}\n")
                if self._refusals >= MAX_AUTH_TRIES:
                    log.warning("ssh connection closed peer=%s reason=%r", self._peer,
                                f"{MAX_AUTH_TRIES} certificates refused")
                    self._conn.disconnect(asyncssh.DISC_NO_MORE_AUTH_METHODS_AVAILABLE,
                                          f"{MAX_AUTH_TRIES} certificates refused")
            return False
        self._granted = (login, key_data)
        return True

    def auth_completed(self) -> None:
        self._watch_expiry()

    def _watch_expiry(self) -> None:
        """Decide again when the certificate ends: the connection closes with it."""
        if self.grant is None:
            return
        left = self.grant.valid_before - self._clock.now().timestamp()
        self._expiry = asyncio.get_running_loop().call_later(
            min(max(left, 0.0), EXPIRY_CHECK_MAX), self._expiry_due)

    def _expiry_due(self) -> None:
        if self.recheck():  # not yet: a far expiry, or the clock was set back
            self._watch_expiry()

    def recheck(self) -> bool:
        """Decide again for the login this connection holds, against the trust, roles and
        time of now; a connection no longer allowed is refused, audited and closed."""
        if self._granted is None or self.grant is None:
            return False
        login, key_data = self._granted
        try:
            self.grant = self._decide(login, key_data)
        except (AccessDenied, BadParameter) as exc:
            grant, self.grant, self._granted = self.grant, None, None
            reason = f"{exc} (the connection's login is no longer allowed: closed)"
            log.warning("ssh connection closed user=%s login=%s peer=%s reason=%r",
                        grant.user, login, self._peer, reason)
            self._rejected(grant, reason)
            if self._conn is not None:  # the client shows the reason (gsh in its line)
                # Not DISC_BY_APPLICATION: asyncssh's client takes that for a clean close.
                self._conn.disconnect(asyncssh.DISC_NO_MORE_AUTH_METHODS_AVAILABLE,
                                      f"access revoked: {exc}")
            return False
        return True

    def _decide(self, login: str, key_data: bytes) -> Grant:
        cert = sshcert.decode(key_data)
        trust = self._trust()
        assert cert.signature_key is not None
        ca_line = sshcert.public_key_line(cert.signature_key)
        signer = trust.user_ca_lines.get(ca_line)
        if signer is None:  # first: a stranger's other faults are theirs to choose
            raise _UntrustedCA("certificate is not signed by a trusted user CA")
        now = int(self._clock.now().timestamp())
        sshcert.check_validity(cert, now=now, cert_type=sshcert.CertType.USER, principal=login)
        # A leaf-local login's certificate (signed here) speaks for a root's user.
        cluster = rolemap.holder_cluster(signer, cert.origin, trust.cluster)
        # A local user's own roles, or a root user's through the leaf's role map. An SSO
        # user has no record: they stand while the connector they logged in through does.
        exists = cert.connector in trust.connectors if cert.connector \
            else cert.key_id in trust.users
        names = rolemap.resolve_roles(
            user=cert.key_id, user_cluster=cluster, cert_roles=cert.roles,
            local_cluster=trust.cluster, user_exists=exists,
            root=trust.roots.get(cluster), existing=trust.roles)
        roles = [trust.roles[name] for name in names if name in trust.roles]
        if not roles:
            raise AccessDenied(f"user {cert.key_id} has no roles known on this cluster")
        decision = rbac.check_ssh_access(
            roles, login=login, node_labels=self._labels,
            traits=UserTraits.of(cert.traits, sso=bool(cert.connector)))
        if not decision.allowed:
            raise AccessDenied(decision.reason)
        check_can_run_as(login)
        return Grant(
            user=cert.key_id,
            login=login,
            roles=tuple(r.metadata.name for r in roles),
            cluster=cluster,
            port_forwarding=rbac.allows_port_forwarding(roles)
            and "permit-port-forwarding" in cert.extensions,
            file_transfer=rbac.check_file_transfer(roles),
            recording_required=rbac.recording_required(roles),
            permit_pty="permit-pty" in cert.extensions,
            correlation_id=sshcert.correlation_id(cert.key_id, cert.serial),
            valid_before=cert.valid_before,
        )

    def _rejected(self, grant: Grant, reason: str) -> None:
        self._audit("session.rejected", {
            "user": grant.user, "login": grant.login, "remote_addr": self._peer,
            "correlation_id": grant.correlation_id, "message": reason})

    def connection_lost(self, exc: Exception | None) -> None:
        self._granted = None  # nothing to recheck any more
        if self._expiry is not None:
            self._expiry.cancel()

    def session_requested(self) -> asyncssh.SSHServerSession[bytes] | bool:
        if not self.recheck():
            return False
        grant = self.grant
        assert grant is not None  # recheck() passed
        if self._sessions >= MAX_SESSIONS:
            reason = f"at most {MAX_SESSIONS} sessions at once on one connection"
            log.warning("ssh session refused user=%s peer=%s reason=%r", grant.user,
                        self._peer, reason)
            self._rejected(grant, reason)
            return False
        base = {"user": grant.user, "login": grant.login, "remote_addr": self._peer,
                "correlation_id": grant.correlation_id}

        def on_event(event: str, fields: dict[str, object]) -> None:
            message = fields.pop("message", "")  # sftp.denied: why; sftp: what, in a line
            self._audit(event, {**base, "fields": fields, "message": str(message),
                                "session_id": str(fields.get("session_id", ""))})

        record = self._trust().record_sessions
        policy = SessionPolicy(login=grant.login, permit_pty=grant.permit_pty,
                               env_allowed=None, on_event=on_event,
                               file_transfer_refused=None if grant.file_transfer.allowed
                               else grant.file_transfer.reason,
                               tap_factory=(lambda info: self._record(grant, info))
                               if record else None,
                               on_closed=self._session_closed)
        self._sessions += 1
        return make_session_factory(policy)()

    def _session_closed(self) -> None:
        self._sessions -= 1

    def connection_requested(
        self, dest_host: str, dest_port: int, orig_host: str, orig_port: int
    ) -> bool:
        grant = self.grant if self.recheck() else None
        allowed = grant is not None and grant.port_forwarding
        event = "port_forward" if allowed else "port_forward.denied"
        self._audit(event, {"user": grant.user if grant else "",
                            "login": grant.login if grant else "", "remote_addr": self._peer,
                            "fields": {"dest": f"{dest_host}:{dest_port}"}})
        return allowed

    def server_requested(self, listen_host: str, listen_port: int
                         ) -> Awaitable[asyncssh.SSHListener] | bool:
        """`ssh -R`: listen on the node's loopback (see node.remoteforward)."""
        grant = self.grant if self.recheck() else None
        reason = remoteforward.refusal(
            allowed=grant is not None and grant.port_forwarding,
            login=grant.login if grant else "", login_uid=_uid(grant.login) if grant else None,
            port=listen_port, held=self._remote_listeners)
        if reason is not None or self._conn is None:
            log.warning("remote forward refused user=%s port=%d reason=%r",
                        grant.user if grant else "", listen_port, reason)
            self._forward_event("port_forward.denied", f"{listen_host}:{listen_port}",
                                reason or "the connection is closing")
            return False
        self._remote_listeners += 1
        return self._listen(self._conn, listen_host, listen_port)

    async def _listen(self, conn: asyncssh.SSHServerConnection, listen_host: str,
                      listen_port: int) -> asyncssh.SSHListener:
        bind = remoteforward.bind_host(listen_host)
        try:
            # Connections go back as forwarded-tcpip channels named by the address the
            # client asked for, which is how its asyncssh or ssh(1) finds the forward.
            listener = await conn.forward_local_port(bind, listen_port, listen_host,
                                                     listen_port)
        except OSError as exc:
            self._remote_listeners -= 1
            self._forward_event("port_forward.denied", f"{bind}:{listen_port}",
                                f"cannot listen: {exc.strerror or exc}")
            raise
        self._forward_event("port_forward", f"{bind}:{listener.get_port()}", "remote")
        return listener

    def _forward_event(self, event: str, listen: str, message: str) -> None:
        grant = self.grant
        self._audit(event, {"user": grant.user if grant else "",
                            "login": grant.login if grant else "", "remote_addr": self._peer,
                            "message": message, "fields": {"listen": listen}})


def _uid(login: str) -> int | None:
    try:
        return pwd.getpwnam(login).pw_uid
    except KeyError:
        return None


def _key_id(key_data: bytes) -> str:
    try:
        return sshcert.decode(key_data).key_id
    except BadParameter:
        return ""


class NodeConnection(LeanSends, asyncssh.SSHServerConnection):
    """asyncssh's server connection, with Gatehouse's decision before the signature check.

    asyncssh does not hand the certificate to the server object, so this is the
    one place that sees the raw blob (see asyncssh connection.validate_public_key).
    """

    async def validate_public_key(
        self, username: str, key_data: bytes, msg: bytes, signature: bytes
    ) -> bool:
        owner = self._owner
        if not isinstance(owner, NodeSSHServer):
            return False
        if not sshcert.is_certificate(key_data):
            log.debug("plain public key offered for %s: only certificates are accepted", username)
            return False
        if not owner.authorize(username, key_data):
            return False
        return await super().validate_public_key(username, key_data, msg, signature)


class SSHFront:
    """The node's SSH server, for every connection it takes: from its listener (direct
    mode) or over its tunnel (tunnel mode). Its host certificate can be replaced while it
    serves (renewal): connections taken after :meth:`use_host_cert` present the new one."""

    def __init__(self, host_key: asyncssh.SSHKey, host_cert: asyncssh.SSHCertificate,
                 server_factory: ServerFactory) -> None:
        self._factory = server_factory
        self.options = _options(host_key, host_cert, lambda: server_factory(""))

    def use_host_cert(self, host_key: asyncssh.SSHKey,
                      host_cert: asyncssh.SSHCertificate) -> None:
        self.options = _options(host_key, host_cert, lambda: self._factory(""))

    def connection(self) -> NodeConnection:
        return NodeConnection(asyncio.get_running_loop(), self.options)

    async def listen(self, host: str, port: int) -> asyncio.Server:
        """Start accepting SSH connections on host:port."""
        return await asyncio.get_running_loop().create_server(self.connection, host, port,
                                                              reuse_address=True)

    def over(self, peer: str) -> NodeConnection:
        """A connection for a user at ``peer`` whose transport is not a socket (a tunnel
        stream's: tunnel/streamtransport.py)."""
        options = asyncssh.SSHServerConnectionOptions(
            self.options, server_factory=lambda: self._factory(peer))
        return NodeConnection(asyncio.get_running_loop(), options)


def _options(host_key: asyncssh.SSHKey, host_cert: asyncssh.SSHCertificate,
             server_factory: Callable[[], NodeSSHServer]) -> asyncssh.SSHServerConnectionOptions:
    # Built in the loop: the keys are objects already, nothing here reads a file.
    return asyncssh.SSHServerConnectionOptions(
        server_factory=server_factory,
        server_host_keys=[(host_key, host_cert)],
        allow_scp=False,
        login_timeout=30,
        keepalive_interval=30,
    )
