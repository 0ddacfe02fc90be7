"""Nodes' heartbeat schedule: nodes that once beat together (started together, or held
up together by a busy auth) must not keep beating together for ever."""

from __future__ import annotations

import random
import statistics
from collections import Counter

from gatehouse.wire.cadence import JITTER, heartbeat_pause

PERIOD = 25.0


def test_a_pause_is_counted_from_when_the_last_heartbeat_began() -> None:
    rng = random.Random(1)
    for _ in range(1000):
        began = rng.uniform(0, 1000)
        took = rng.uniform(0, 2)
        pause = heartbeat_pause(PERIOD, began=began, now=began + took, rng=rng)
        assert PERIOD * (1 - JITTER) <= took + pause <= PERIOD * (1 + JITTER)


def test_heartbeats_held_up_past_their_period_do_not_all_follow_at_once() -> None:
    """1,000 nodes whose calls all timed out together: the next ones spread over a
    tenth of the period, not all at the same instant."""
    rng = random.Random(2)
    pauses = [heartbeat_pause(PERIOD, began=0.0, now=PERIOD * 1.2, rng=rng)
              for _ in range(1000)]
    assert all(0 <= p <= PERIOD * JITTER for p in pauses)
    assert max(Counter(int(p * 10) for p in pauses).values()) < 100  # per 0.1 s


def test_the_mean_period_is_the_period() -> None:
    rng = random.Random(3)
    pauses = [heartbeat_pause(PERIOD, began=0.0, now=0.0, rng=rng) for _ in range(20_000)]
    assert abs(statistics.fmean(pauses) - PERIOD) < 0.05


def _busiest_second(times: list[float]) -> int:
    return max(Counter(int(t) for t in times).values())


def test_nodes_that_beat_together_spread_out() -> None:
    """1,000 nodes whose heartbeats an auth stall bunched into one second: ten periods
    later, no second of the period carries more than a few times its share (a fixed
    period would keep all 1,000 in that second for ever, and a busy auth that answers
    the bunch late only pushes it on together)."""
    rng = random.Random(4)
    nodes = 1000
    beats = [rng.uniform(0, 1) for _ in range(nodes)]  # the bunch
    for _ in range(10):
        # The auth answers a bunch of n within n ms: the bunch's last is answered late.
        order = sorted(range(nodes), key=lambda i: beats[i])
        for rank, i in enumerate(order):
            answered = beats[i] + rank * 0.001
            beats[i] = answered + heartbeat_pause(PERIOD, began=beats[i], now=answered,
                                                  rng=rng)
    phases = [t % PERIOD for t in beats]
    share = nodes / PERIOD
    assert _busiest_second(phases) < 3 * share
