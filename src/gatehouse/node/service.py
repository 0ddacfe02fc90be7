"""The SSH service: serves SSH, heartbeats its presence, reports audit events.

In direct mode it listens at ``ssh_service.listen_addr``; in tunnel mode it listens
nowhere and holds a reverse tunnel to its cluster's proxy (tunnel/link.py, as a leaf
proxy holds one to its root), on which it serves its SSH server (tunnelstreams.py).
It reaches its auth only through the typed auth interface: over HTTPS (directly or
via a proxy) with the host certificate it received when it joined, or in-process
when it shares a process with its auth.
"""

from __future__ import annotations

import asyncio
import logging
import random
import uuid
import weakref
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import asyncssh

from gatehouse._sys.hostport import listen_error, split_host_port
from gatehouse.client.auditspool import AuditSpool
from gatehouse.client.trust import TrustWatcher
from gatehouse.clock import Clock, Monotonic
from gatehouse.config import SSHSection
from gatehouse.errors import AccessDenied, BadParameter, ConnectionProblem, GatehouseError
from gatehouse.node import sshserver
from gatehouse.node.recorder import SessionRecorder, read_meta, recover, waiting
from gatehouse.node.session import SessionInfo
from gatehouse.node.spawn import unignore_session_signals
from gatehouse.node.strangers import StrangerRefusals
from gatehouse.node.tunnelstreams import TunnelStreams
from gatehouse.node.uploader import upload_with_retries
from gatehouse.pki import x509
from gatehouse.pki.keystore import StoredIdentity
from gatehouse.tunnel.agent import TunnelAgent
from gatehouse.tunnel.link import TunnelLink
from gatehouse.tunnel.needs import Root
from gatehouse.wire.authapi import AuthAPI, Heartbeat
from gatehouse.wire.cadence import heartbeat_pause
from gatehouse.wire.eventsize import bound_event
from gatehouse.wire.names import NODE_HEARTBEAT, TUNNEL_NODE_HEARTBEAT

__all__ = ["NodeService"]

log = logging.getLogger(__name__)


class NodeService:
    def __init__(
        self,
        cfg: SSHSection,
        nodename: str,
        identity: StoredIdentity,
        api: AuthAPI,
        clock: Clock,
        state: Path,
        *,
        timer: Monotonic,
        tunnel_to: str = "",
    ) -> None:
        self._cfg = cfg
        self._timer = timer
        self._tunnel_to = tunnel_to  # the proxy to hold a tunnel to; "": direct mode
        self._nodename = nodename
        self._identity = identity
        self._api = api
        self._clock = clock
        self._trust = TrustWatcher(api)
        self.host_id = identity.identity().name
        self._recordings = state / "recordings"
        self._spool = AuditSpool(state / "audit")
        self._strangers = StrangerRefusals(self._audit, clock)
        self._live: set[SessionRecorder] = set()
        self._servers: weakref.WeakSet[sshserver.NodeSSHServer] = weakref.WeakSet()
        self._tg: asyncio.TaskGroup | None = None
        self._front: sshserver.SSHFront | None = None
        self._stopping = False  # run() is ending: no recording (so no session) starts

    def _start_recording(self, grant: sshserver.Grant,
                         info: SessionInfo) -> SessionRecorder | None:
        """Record the session on this node; upload it to the auth when it ends.

        A recording that cannot be written (a full disk) does not stop the session: the
        failure is audited and the user told (docs/security.md). Unless the user's roles
        require it (record_session strict): then the session is refused (AccessDenied)
        or ended, and the audit says so.
        """
        if self._stopping:
            raise AccessDenied("gatehouse: this node is stopping: no new session starts")
        required = grant.recording_required

        def failed(exc: Exception, recorded: int, *, started: bool = True) -> None:
            reason = str(exc)
            outcome = "" if required is None else \
                f"; the session was {'ended' if started else 'refused'}: {required}"
            self._audit("session.recording.failure", {
                "user": grant.user, "login": info.login, "session_id": info.session_id,
                "correlation_id": grant.correlation_id,
                "message": f"the node could not write the session's recording ({reason}); "
                           f"it holds the first {recorded} bytes of output{outcome}",
                "fields": {"reason": reason, "recorded_bytes": recorded,
                           "session_ended": required is not None}})
            if required is None:
                info.tell_user(f"gatehouse: this session is {'no longer' if started else 'not'}"
                               f" recorded: the node cannot write its recording ({reason}); "
                               "the failure is audited")
            elif started:
                info.tell_user(f"gatehouse: this session is ended: the node cannot write its "
                               f"recording ({reason}), and {required}; the failure is "
                               "audited")
                info.end_session()

        try:
            rec = SessionRecorder(
                self._recordings, session_id=info.session_id,
                cluster=self._trust.current().cluster, user=grant.user, login=info.login,
                node=self._nodename, cols=info.cols, rows=info.rows, command=info.command,
                clock=self._clock, on_failure=failed)
            rec.start()
        except Exception as exc:  # OSError: a full disk; anything else: a fault of ours
            log.error("session not recorded session_id=%s reason=%r", info.session_id, str(exc),
                      exc_info=not isinstance(exc, OSError))
            failed(exc, 0, started=False)
            if required is not None:
                raise AccessDenied(f"gatehouse: this session cannot start: the node cannot "
                                   f"write its recording ({exc}), and {required}; the "
                                   "failure is audited") from None
            return None
        self._live.add(rec)

        async def finish() -> None:
            try:
                path = await rec.wait_closed()
            finally:
                self._live.discard(rec)
            if not rec.discarded:
                await self._upload(path)

        assert self._tg is not None
        self._tg.create_task(finish())
        return rec

    async def _upload(self, path: Path) -> None:
        """Upload a finished recording; while the auth cannot store it, audit that once."""
        def held(reason: str) -> None:
            try:
                meta = read_meta(path)
            except (OSError, BadParameter) as exc:
                log.error("held recording %s is unreadable: %s", path.name, exc)
                return
            self._audit("session.upload.failure", {
                "user": meta.user, "login": meta.login, "session_id": meta.session_id,
                "message": "the auth cannot store the session's recording now; the node "
                           "keeps it and retries",
                "fields": {"reason": reason}})

        await upload_with_retries(self._api, path, on_held=held)

    def _report_aborted(self, path: Path) -> None:
        """A session the node did not see end (it crashed): say so in the audit log."""
        try:
            meta = read_meta(path)
        except (OSError, BadParameter) as exc:
            log.error("recovered recording %s is unreadable: %s", path.name, exc)
            return
        self._audit("session.abort", {
            "user": meta.user, "login": meta.login, "session_id": meta.session_id,
            "message": "the node stopped during the session; its recording ends there"})

    def _audit(self, event: str, fields: dict[str, Any]) -> None:
        """Spool an event, cut to the size the auth stores (a long command keeps its head)."""
        record = {"event": event, "time": self._clock.now().isoformat(), "cluster": "",
                  "id": str(uuid.uuid4()), **fields}
        self._spool.append(bound_event(record))

    async def run(self, started: Callable[[str], None]) -> None:
        """Serve until cancelled; ``started`` gets where it serves once ready."""
        unignore_session_signals()
        key, cert = self._host_credentials()
        async with asyncio.TaskGroup() as tg:
            self._tg = tg
            tg.create_task(self._trust.run())
            for path in recover(self._recordings):  # the sessions a crash cut short
                self._report_aborted(path)
            # Those, and the recordings whose upload a crash or a stop cut short.
            for path in waiting(self._recordings):
                tg.create_task(self._upload(path))
            try:
                await asyncio.wait_for(self._trust.ready.wait(), 30)
            except TimeoutError:
                raise ConnectionProblem(
                    "the ssh service could not fetch its trust from its auth in 30 s"
                ) from None
            self._front = front = sshserver.SSHFront(key, cert, self._server_for)
            tg.create_task(self._recheck_on_trust_change())
            tg.create_task(self._strangers.run(self._timer))
            server = None if self._tunnel_to else await self._listen(front)
            try:
                await self._heartbeat()
                tg.create_task(self._heartbeats())
                tg.create_task(self._spool.run(
                    self._api.post_events))
                if self._tunnel_to:
                    tg.create_task(self._tunnel(front).run())
                    started(f"a tunnel to {self._tunnel_to}")
                else:
                    started(self._cfg.advertised_addr())
                await asyncio.Future()  # until cancelled
            finally:
                if server is not None:
                    server.close()
                self._stopping = True  # open connections may still ask for sessions
                for rec in list(self._live):  # sessions cut short by the shutdown
                    rec.end()

    def _server_for(self, peer: str) -> sshserver.NodeSSHServer:
        """The SSH server object of a new connection, held (weakly) for rechecks."""
        server = sshserver.NodeSSHServer(
            trust=self._trust.current, labels=self._cfg.labels, clock=self._clock,
            audit=self._audit, record=self._start_recording,
            strangers=self._strangers.refused, peer=peer)
        self._servers.add(server)
        return server

    async def _recheck_on_trust_change(self) -> None:
        """Every trust the auth pushes (a user, role or trust removed or changed) is
        checked against each open connection: one no longer allowed is closed."""
        changed = self._trust.subscribe()
        while True:
            await changed.wait()
            changed.clear()
            for server in list(self._servers):
                server.recheck()

    async def _listen(self, front: sshserver.SSHFront) -> asyncio.Server:
        host, port = split_host_port(self._cfg.listen_addr)
        try:
            return await front.listen(host, port)
        except OSError as exc:
            raise listen_error("ssh_service.listen_addr", self._cfg.listen_addr, exc) from None

    def _tunnel(self, front: sshserver.SSHFront) -> TunnelAgent:
        """The agent that keeps this node's tunnel to its proxy, verified by the host CA
        pinned at join (the same dial, heartbeat and back-off as a leaf's tunnels)."""
        cluster = self._identity.identity().cluster
        host_cas = [pem for pem in x509.pem_blocks(self._identity.cas_pem())
                    if x509.ca_type(x509.load_cert(pem)) == "host"]
        proxy = Root(name=cluster, proxy_addr=self._tunnel_to, host_ca_tls="".join(host_cas))

        def link(root: Root) -> Coroutine[Any, Any, None]:
            return TunnelLink(root, self._identity, serve=TunnelStreams(front, self.host_id),
                              while_up=None, clock=self._timer, rng=random.Random(),
                              what=f"the proxy of {root.name}", on_state=None).run()

        return TunnelAgent(lambda: {cluster: proxy}, asyncio.Event(), link)

    def _host_credentials(self) -> tuple[asyncssh.SSHKey, asyncssh.SSHCertificate]:
        return (asyncssh.import_private_key(self._identity.key_file.read_bytes()),
                asyncssh.import_certificate(self._identity.ssh_cert_line()))

    def reload_identity(self) -> None:
        """Present the renewed host certificate to the connections accepted from now."""
        if self._front is not None:
            self._front.use_host_cert(*self._host_credentials())

    async def _heartbeat(self) -> None:
        tunnel = bool(self._tunnel_to)
        await self._api.heartbeat(Heartbeat(hostname=self._nodename,
                                            addr="" if tunnel else self._cfg.advertised_addr(),
                                            labels=self._cfg.labels, tunnel=tunnel))

    async def _heartbeats(self) -> None:
        every = TUNNEL_NODE_HEARTBEAT if self._tunnel_to else NODE_HEARTBEAT
        rng = random.Random()
        began = self._timer.monotonic()
        while True:
            await self._timer.sleep(heartbeat_pause(every, began=began,
                                                    now=self._timer.monotonic(), rng=rng))
            began = self._timer.monotonic()
            try:
                await self._heartbeat()
            except GatehouseError as exc:
                log.warning("heartbeat failed: %s", exc)
