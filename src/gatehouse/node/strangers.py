"""The node's audit of certificates that no CA it trusts signed: the first refusal of a
kind from a source is audited at once, its repeats within WINDOW as one event.

A stranger that reaches the node's port chooses how often to be refused: MAX_AUTH_TRIES
caps one connection, not how many it opens. The summary event is the window's last
refusal with ``fields.count`` (how many it stands for), ``fields.first`` (when the first
of them happened) and ``fields.names`` (the distinct users they claimed), as the auth
folds its own strangers' failures (auth/failures.py). A refusal of a certificate the
node's CAs did sign (a user whose roles deny the login) is always audited on its own.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from gatehouse.clock import Clock, Monotonic, utc
from gatehouse.ratelimit import source_of
from gatehouse.repeats import Repeats

__all__ = ["FLUSH_EVERY", "SOURCES", "WINDOW", "StrangerRefusals"]

WINDOW = 60.0  # seconds over which a source's repeated refusals fold into one event
SOURCES = 4096  # sources folded at once (past that, each refusal is audited alone)
FLUSH_EVERY = 1.0  # seconds between looks for windows that ended

Audit = Callable[[str, dict[str, Any]], None]


class StrangerRefusals:
    def __init__(self, audit: Audit, clock: Clock, *, window: float = WINDOW,
                 sources: int = SOURCES) -> None:
        self._audit = audit
        self._clock = clock
        self._repeats: Repeats[dict[str, Any]] = Repeats(window, sources)

    def refused(self, fields: dict[str, Any]) -> None:
        """Audit the refusal (an ``auth`` event's fields) now, or count it in its window."""
        key = (source_of(str(fields.get("remote_addr", ""))), fields.get("message", ""))
        if self._repeats.add(key, fields, self._clock.now().timestamp(),
                             name=str(fields.get("user", ""))):
            self._audit("auth", fields)

    def flush(self, *, everything: bool = False) -> None:
        """Audit one event for each window that ended (``everything``: each window)."""
        due = self._repeats.drain() if everything else \
            self._repeats.due(self._clock.now().timestamp())
        for repeated in due:
            fields = repeated.item
            self._audit("auth", {**fields, "fields": {
                **fields.get("fields", {}), "count": repeated.count,
                "first": utc(repeated.first).isoformat(), "names": repeated.names}})

    async def run(self, timer: Monotonic) -> None:
        """Close windows as they end, until cancelled; then close every one."""
        try:
            while True:
                await timer.sleep(FLUSH_EVERY)
                self.flush()
        finally:
            self.flush(everything=True)
