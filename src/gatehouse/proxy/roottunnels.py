"""A leaf proxy's reports to its auth of its tunnels to roots: up, or down and why.

The auth shows them as each trusted_cluster's status (`gatectl status`, `gatectl get
trusted_cluster`), so an admin on the leaf sees a tunnel that never comes up, and the
reason (the root refused it, cannot be reached...), without reading the proxy's log.
A change is reported COALESCE after it (a tunnel refused at once reads as down), and
every state again each REPORT_INTERVAL while the proxy dials a root (tunnel.liveness).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterable

from gatehouse.clock import Monotonic, wait_for
from gatehouse.errors import GatehouseError
from gatehouse.tunnel.liveness import ReportSchedule
from gatehouse.wire.authapi import RootTunnel

__all__ = ["RootTunnelReports"]

log = logging.getLogger(__name__)

Report = Callable[[list[RootTunnel]], Awaitable[None]]


class RootTunnelReports:
    def __init__(self, report: Report, roots: Callable[[], Iterable[str]],
                 timer: Monotonic) -> None:
        self._report = report
        self._roots = roots  # the roots dialed as of now
        self._timer = timer
        self._states: dict[str, RootTunnel] = {}
        self._schedule = ReportSchedule(timer.monotonic())
        self._wake = asyncio.Event()
        self._idle_reported = False  # the auth knows we dial no root: no need to repeat it

    def changed(self, state: RootTunnel) -> None:
        """A tunnel came up, or went down (its ``detail`` says why)."""
        if self._states.get(state.root) != state:
            self._states[state.root] = state
            self._schedule.changed(self._timer.monotonic())
            self._wake.set()

    def current(self) -> list[RootTunnel]:
        """The state of the tunnel to each root dialed now (a new one: connecting)."""
        wanted = sorted(self._roots())
        for gone in self._states.keys() - set(wanted):
            del self._states[gone]
        return [self._states.get(root) or RootTunnel(root=root, up=False, detail="connecting")
                for root in wanted]

    async def run(self) -> None:
        """Report until cancelled."""
        while True:
            now = self._timer.monotonic()
            if self._schedule.wait(now) == 0:
                await self._send(now)
                continue
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await wait_for(self._timer, self._wake.wait(), self._schedule.wait(now))

    async def _send(self, now: float) -> None:
        self._schedule.sending(now)
        states = self.current()
        if not states and self._idle_reported:
            return  # a proxy without roots (most of them) stays quiet
        try:
            await self._report(states)
        except GatehouseError as exc:
            log.warning("could not report the tunnels to roots to the auth: %s", exc)
            self._schedule.failed(self._timer.monotonic())
        else:
            self._idle_reported = not states
