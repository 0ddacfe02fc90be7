"""A stranger's refusals at the node: the first of a kind from a source at once, the
repeats of a window as one event; another source or another reason is its own kind."""

from __future__ import annotations

import datetime as dt
from typing import Any

from gatehouse.clock import FakeClock
from gatehouse.node.strangers import WINDOW, StrangerRefusals


def _refusal(addr: str, message: str = "certificate is not signed by a trusted user CA",
             user: str = "mallory") -> dict[str, Any]:
    return {"login": "root", "remote_addr": addr, "message": message, "user": user}


def test_repeats_of_a_window_become_one_count() -> None:
    clock = FakeClock()
    events: list[dict[str, Any]] = []
    strangers = StrangerRefusals(lambda event, fields: events.append(fields), clock)
    started = clock.now()
    for n in range(5):
        strangers.refused(_refusal(f"192.0.2.7:{40000 + n}", user=f"u{n % 2}"))
    strangers.refused(_refusal("198.51.100.1:5000"))  # another source
    strangers.refused(_refusal("192.0.2.7:6000", message="malformed certificate"))
    assert [e["remote_addr"] for e in events] == [
        "192.0.2.7:40000", "198.51.100.1:5000", "192.0.2.7:6000"]
    strangers.flush()
    assert len(events) == 3  # the window is still open
    clock.advance(dt.timedelta(seconds=WINDOW + 1))
    strangers.flush()
    (summary,) = events[3:]
    assert summary["remote_addr"] == "192.0.2.7:40004"  # the last of them
    assert summary["fields"] == {"count": 4, "first": started.isoformat(),
                                 "names": ["u1", "u0"]}
    strangers.refused(_refusal("192.0.2.7:7000"))  # a new window: at once again
    assert events[-1]["remote_addr"] == "192.0.2.7:7000"
