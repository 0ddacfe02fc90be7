"""Tunnel liveness that costs almost nothing per idle tunnel (pure decisions, and socket options).

Three layers, cheapest first:

- The kernel notices a silently dead peer (a host gone, a link cut): TCP keepalive
  probes a connection idle for KEEPALIVE_IDLE seconds, and TCP_USER_TIMEOUT gives
  up on a connection whose probes or data stay unacknowledged for USER_TIMEOUT
  (tcp(7)), so the tunnel closes within ~USER_TIMEOUT + KEEPALIVE_INTERVAL seconds
  without waking Python. Both ends set these options.
- Only the accepting end (a root proxy) sends application heartbeats, which prove
  that the far process still serves the tunnel, not just its kernel: every
  SWEEP_INTERVAL it looks over all its tunnels at once, pings those it has heard
  nothing from for HEARTBEAT_INTERVAL (any frame counts), in PING_STEPS batches
  over the interval, and drops those whose ping went unanswered for PING_TIMEOUT.
  Pinging in batches matters: the answers come back together and are read in a
  few wake-ups of the event loop, where a heartbeat from each leaf at its own time
  would wake the root once per tunnel (measured on loopback: several times the CPU
  per heartbeat). The dialing end (the leaf agent) answers, and redials a root it
  has heard nothing from for ROOT_SILENT_AFTER.
- The root proxy tells its auth which tunnels it holds in one call for all of them
  (``ReportSchedule``): at once when the set changes (coalesced over COALESCE), and
  every REPORT_INTERVAL in any case. The auth counts a leaf online while it is listed
  in a report fresher than ``services.trust.ONLINE_WITHIN`` (a few intervals).
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterable
from typing import Any, TypeVar

__all__ = [
    "COALESCE",
    "HEARTBEAT_INTERVAL",
    "PING_STEPS",
    "PING_TIMEOUT",
    "REPORT_INTERVAL",
    "ROOT_SILENT_AFTER",
    "SWEEP_INTERVAL",
    "ReportSchedule",
    "set_keepalive",
    "sweep",
]

KEEPALIVE_IDLE = 5  # seconds of silence before the kernel's first probe
KEEPALIVE_INTERVAL = 2  # seconds between probes
KEEPALIVE_COUNT = 3  # unanswered probes before giving up (without TCP_USER_TIMEOUT)
USER_TIMEOUT = 10  # seconds probes or data may stay unacknowledged

HEARTBEAT_INTERVAL = 120.0  # the root pings a tunnel it has heard nothing from for this
PING_TIMEOUT = 15.0  # and drops it if the ping is not answered within this
SWEEP_INTERVAL = 5.0  # the root looks over its tunnels this often
PING_STEPS = 20  # a round's pings go out in this many batches over SWEEP_INTERVAL
# A leaf redials a root silent for this long: the root would have pinged it by now.
ROOT_SILENT_AFTER = HEARTBEAT_INTERVAL + SWEEP_INTERVAL + PING_TIMEOUT + 10.0

COALESCE = 0.5  # seconds: tunnels coming and going within this make one report
REPORT_INTERVAL = 5.0  # the full list again, even with no change
RETRY = 1.0  # after a failed report

K = TypeVar("K")

log = logging.getLogger(__name__)


def set_keepalive(sock: Any) -> None:
    """Let the kernel detect a silently dead peer (see the module docstring).

    ``sock`` is what a transport's ``get_extra_info("socket")`` returns (a socket, or a
    loop's stand-in for one); options this platform lacks are skipped.
    """
    if sock is None:
        return
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        for name, value in (("TCP_KEEPIDLE", KEEPALIVE_IDLE),
                            ("TCP_KEEPINTVL", KEEPALIVE_INTERVAL),
                            ("TCP_KEEPCNT", KEEPALIVE_COUNT),
                            ("TCP_USER_TIMEOUT", USER_TIMEOUT * 1000)):  # milliseconds
            option = getattr(socket, name, None)
            if option is not None:
                sock.setsockopt(socket.IPPROTO_TCP, option, value)
    except OSError as exc:  # e.g. the peer is already gone: the tunnel will notice
        log.warning("cannot set TCP keepalive on a tunnel: %s", exc)


def sweep(tunnels: Iterable[tuple[K, float, float | None]],
          now: float) -> tuple[list[K], list[K]]:
    """(tunnels to ping, tunnels to drop) among ``(tunnel, when a frame last came in,
    when we last pinged it or None)``, times in monotonic seconds."""
    ping, dead = [], []
    for key, seen, pinged in tunnels:
        if pinged is not None and seen < pinged:  # our ping is not answered yet
            if now - pinged >= PING_TIMEOUT:
                dead.append(key)
        elif now - seen >= HEARTBEAT_INTERVAL:
            ping.append(key)
    return ping, dead


class ReportSchedule:
    """When a root proxy reports its tunnels to its auth; times in monotonic seconds.

    The first report is due at once; a change is reported COALESCE after the first
    change not yet reported; otherwise the full list is repeated every REPORT_INTERVAL.
    Call ``sending`` when taking the list to send (a change after that is reported
    next time) and ``failed`` if the call then failed.
    """

    def __init__(self, now: float) -> None:
        self._full_at = now
        self._change_at: float | None = None

    def changed(self, now: float) -> None:
        if self._change_at is None:
            self._change_at = now + COALESCE

    def wait(self, now: float) -> float:
        """Seconds until the next report is due (0: now)."""
        due = self._full_at if self._change_at is None else min(self._full_at, self._change_at)
        return max(0.0, due - now)

    def sending(self, now: float) -> None:
        self._change_at = None
        self._full_at = now + REPORT_INTERVAL

    def failed(self, now: float) -> None:
        self._full_at = min(self._full_at, now + RETRY)
