"""Per-source budgets and connection counts (gatehouse.ratelimit): pure, on plain numbers."""

from __future__ import annotations

import pytest

from gatehouse.ratelimit import ConnectionCounts, RateLimiter, retry_after, source_of


@pytest.mark.parametrize(("addr", "source"), [
    ("192.0.2.7", "192.0.2.7"),
    ("192.0.2.7:5000", "192.0.2.7"),
    ("[2001:db8:1:2:3:4:5:6]:5000", "2001:db8:1:2::/64"),
    ("2001:db8:1:2:ffff::1", "2001:db8:1:2::/64"),
    ("[::ffff:192.0.2.7]:22", "192.0.2.7"),
    ("in-process", "in-process"),
    ("", ""),
])
def test_a_source_is_an_ipv4_address_or_an_ipv6_slash_64(addr: str, source: str) -> None:
    assert source_of(addr) == source


def test_a_burst_then_one_attempt_per_refill() -> None:
    limiter = RateLimiter(burst=3, per_minute=30, sources=10)  # one token each 2 s
    assert [limiter.take("a", 0.0) for _ in range(4)] == [0.0, 0.0, 0.0, 2.0]
    assert limiter.take("b", 0.0) == 0.0  # sources do not share a budget
    assert limiter.wait("a", 1.5) == pytest.approx(0.5)
    assert limiter.take("a", 2.0) == 0.0
    assert limiter.take("a", 2.0) == 2.0
    assert limiter.take("a", 1000.0) == 0.0  # refilled, never past the burst
    assert [limiter.take("a", 1000.0) for _ in range(3)] == [0.0, 0.0, 2.0]


def test_a_charge_takes_what_is_left_and_never_goes_below_zero() -> None:
    limiter = RateLimiter(burst=2, per_minute=60, sources=10)
    for _ in range(5):
        limiter.charge("a", 0.0)
    assert limiter.wait("a", 0.0) == 1.0  # empty, not in debt
    assert limiter.wait("a", 1.0) == 0.0


def test_a_clock_stepping_back_adds_nothing() -> None:
    limiter = RateLimiter(burst=1, per_minute=60, sources=10)
    limiter.take("a", 100.0)
    assert limiter.wait("a", 50.0) == 1.0


def test_the_table_is_bounded_the_least_recently_used_go_first() -> None:
    limiter = RateLimiter(burst=2, per_minute=60, sources=3)
    for i in range(100):
        limiter.take(f"s{i}", 0.0)
    assert len(limiter) == 3
    limiter.take("s97", 0.0)  # used most recently now: s98 goes next
    limiter.take("new", 0.0)
    assert limiter.take("s97", 0.0) == 1.0  # still empty: kept
    assert limiter.take("s98", 0.0) == 0.0  # forgotten: a full budget again
    assert len(limiter) == 3


def test_retry_after_is_whole_seconds_never_zero() -> None:
    assert [retry_after(s) for s in (0.001, 1.0, 1.2, 29.9)] == [1, 1, 2, 30]


def test_connections_are_counted_per_source_and_in_all() -> None:
    counts = ConnectionCounts(per_source=2, total=3)
    assert counts.admit("a") == "" and counts.admit("a") == ""
    assert "2 connections of a are open" in counts.admit("a")
    assert counts.admit("b") == ""
    assert "3 connections are open" in counts.admit("c")
    counts.release("a")
    assert counts.admit("c") == ""
    for source in ("a", "b", "c"):
        counts.release(source)
    assert len(counts) == 0
    with pytest.raises(ValueError, match="no connection of a is open"):
        counts.release("a")
