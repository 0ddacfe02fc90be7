"""A root proxy tells each leaf whose tunnel it holds what the root says of cluster
labels (the leaf's labels and every root role's cluster_labels, types.cluster_access),
so that the leaf refuses, at its own proxy and nodes, a root user the root would not
route there. Pushed when a tunnel comes up and on every change of the root's trust
snapshot (a label removed is enforced by the leaf well within 2 s); a push the leaf did
not confirm is sent again every RETRY seconds. At most CONCURRENCY leaves are told at
once (a root with a thousand leaves does not open a thousand streams in one go), and a
leaf that keeps failing is warned about once, then again only when it recovers. The
leaf's answer says what it is
(session recording, version): the proxy reports it with its tunnels, for `gatectl get
rc`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from gatehouse.clock import Monotonic, wait_for
from gatehouse.errors import GatehouseError
from gatehouse.tunnel.limits import MAX_ACK
from gatehouse.tunnel.mux import MuxStream, read_all
from gatehouse.wire.authapi import LeafInfo

__all__ = ["CONCURRENCY", "PUSH_TIMEOUT", "RETRY", "AccessPush"]

log = logging.getLogger(__name__)

RETRY = 5.0  # seconds before an unconfirmed push is sent again
PUSH_TIMEOUT = 5.0  # seconds a leaf has to confirm one
CONCURRENCY = 32  # leaves told at once

OpenStream = Callable[[str, dict[str, Any]], Awaitable[MuxStream]]  # (leaf, meta)


class AccessPush:
    def __init__(self, open_stream: OpenStream, leaves: Callable[[], Iterable[str]],
                 body_of: Callable[[str], bytes], timer: Monotonic) -> None:
        self._open = open_stream
        self._leaves = leaves  # the leaves whose tunnels are held now
        self._body_of = body_of  # what to tell a leaf now (JSON)
        self._timer = timer
        self._sent: dict[str, bytes] = {}  # leaf -> what it confirmed on its current tunnel
        self.said: dict[str, LeafInfo] = {}  # leaf -> what it said of itself in its answer
        self._wake = asyncio.Event()
        self._failing: set[str] = set()  # leaves warned about and not confirmed since

    def changed(self) -> None:
        """The root's labels or roles may have changed: tell every leaf what is new."""
        self._wake.set()

    def tunnel_up(self, leaf: str) -> None:
        """A (new) tunnel of ``leaf``: tell it, whatever its last tunnel was told."""
        self._sent.pop(leaf, None)
        self._wake.set()

    async def run(self) -> None:
        """Push until cancelled."""
        while True:
            self._wake.clear()
            unconfirmed = await self.push_all()
            with contextlib.suppress(TimeoutError):
                await wait_for(self._timer, self._wake.wait(), RETRY if unconfirmed else 60.0)

    async def push_all(self) -> int:
        """Tell each connected leaf what it has not confirmed yet; how many did not."""
        held = set(self._leaves())
        for gone in self._sent.keys() - held:
            del self._sent[gone]
        for gone in self.said.keys() - held:
            del self.said[gone]
        for gone in self._failing - held:
            self._failing.discard(gone)
        due = []
        for leaf in sorted(held):
            body = self._body_of(leaf)
            if self._sent.get(leaf) != body:
                due.append((leaf, body))
        gate = asyncio.Semaphore(CONCURRENCY)
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(self._tell(gate, leaf, body)) for leaf, body in due]
        return sum(1 for task in tasks if not task.result())

    async def _tell(self, gate: asyncio.Semaphore, leaf: str, body: bytes) -> bool:
        """Push ``body`` to ``leaf``; whether it confirmed. Failures are logged, not raised."""
        async with gate:
            try:
                await wait_for(self._timer, self._push(leaf, body), PUSH_TIMEOUT)
            except (GatehouseError, OSError, ValueError, TimeoutError) as exc:
                reason = str(exc) or type(exc).__name__
                if leaf in self._failing:
                    log.debug("leaf %s still has not confirmed the cluster labels: %s",
                              leaf, reason)
                else:
                    self._failing.add(leaf)
                    log.warning("could not tell leaf %s the cluster labels (retrying every "
                                "%.0f s, quietly): %s", leaf, RETRY, reason)
                return False
        if leaf in self._failing:
            self._failing.discard(leaf)
            log.info("leaf %s confirmed the cluster labels", leaf)
        self._sent[leaf] = body
        return True

    async def _push(self, leaf: str, body: bytes) -> None:
        stream = await self._open(leaf, {"kind": "access"})
        await stream.write(body)
        stream.write_eof()
        reply = json.loads(await read_all(stream, MAX_ACK))
        if not isinstance(reply, dict) or reply.get("ok") is not True:
            error = reply.get("error") if isinstance(reply, dict) else reply
            raise GatehouseError(f"the leaf did not keep them: {error}")
        try:
            self.said[leaf] = LeafInfo.model_validate(reply.get("leaf") or {})
        except ValueError as exc:  # kept all the same: only what it says of itself is bad
            log.warning("leaf %s says of itself what cannot be shown: %s", leaf, exc)
