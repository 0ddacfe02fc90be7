"""An agent's coverage of a cluster's proxies (pure): which proxies still lack a tunnel,
which tunnel is redundant, where each dial loop dials, and when (a fake clock: plain
monotonic seconds)."""

from __future__ import annotations

import datetime as dt
import random

import pytest

from gatehouse.errors import BadParameter
from gatehouse.tunnel.coverage import (
    DIRECT_AFTER,
    FIRST_BACKOFF,
    HEALTHY_AFTER,
    MAX_BACKOFF,
    MAX_PROXIES,
    Announcement,
    Coverage,
    Redial,
    parse_announcement,
)

BALANCER = "lb.example.com:3080"
A, B, C = "10.0.0.1:3080", "10.0.0.2:3080", "10.0.0.3:3080"
T1 = dt.datetime(2026, 1, 1, 12, 0, tzinfo=dt.UTC)  # when an auth read the registry
T2 = T1 + dt.timedelta(seconds=5)


def test_one_loop_dials_the_configured_address_until_proxies_are_known() -> None:
    cover = Coverage(BALANCER)
    assert cover.loops() == 1 and cover.missing() == []
    assert [cover.address(m) for m in range(6)] == [BALANCER] * 6


def test_a_loop_per_proxy_and_the_missing_ones() -> None:
    cover = Coverage(BALANCER)
    assert cover.take("pa")  # the first dial landed on pa
    cover.announce(Announcement({"pa": A, "pb": B, "pc": C}))
    assert cover.loops() == 3 and cover.missing() == ["pb", "pc"]
    assert not cover.take("pa")  # the balancer picked pa again: redundant, close it
    assert cover.take("pc")
    assert cover.missing() == ["pb"] and cover.held() == {"pa", "pc"}
    cover.lost("pa")  # pa's tunnel closed: pa lacks one again
    assert cover.missing() == ["pa", "pb"]
    assert cover.take("pa")


def test_a_held_proxy_no_longer_announced_keeps_its_loop_while_its_tunnel_lasts() -> None:
    cover = Coverage(BALANCER)
    cover.announce(Announcement({"pa": A, "pb": B}))
    assert cover.take("pa") and cover.take("pb")
    cover.announce(Announcement({"pa": A}))  # pb stopped heartbeating to the auth
    assert cover.loops() == 2 and cover.missing() == []
    cover.lost("pb")
    assert cover.loops() == 1


def test_after_redundant_dials_every_other_dial_goes_to_a_missing_proxy_directly() -> None:
    cover = Coverage(BALANCER)
    cover.announce(Announcement({"pa": A, "pb": B, "pc": C}))
    cover.take("pa")
    dials = [cover.address(m) for m in range(DIRECT_AFTER + 6)]
    assert dials[:DIRECT_AFTER] == [BALANCER] * DIRECT_AFTER
    assert dials[DIRECT_AFTER:] == [B, BALANCER, C, BALANCER, B, BALANCER]


def test_a_proxy_advertising_the_configured_address_is_reached_through_it_only() -> None:
    cover = Coverage(BALANCER)  # every proxy's public_addr is the balancer's
    cover.announce(Announcement({"pa": BALANCER, "pb": BALANCER}))
    cover.take("pa")
    assert {cover.address(m) for m in range(10)} == {BALANCER}


def test_a_loop_backs_off_while_it_gains_nothing_and_starts_over_after_a_long_tunnel() -> None:
    redial = Redial(random.Random(7))
    now = 100.0
    delays = []
    for _ in range(8):  # the balancer keeps picking a proxy already held
        delay = redial.after(now, now + 0.01, kept=False)
        delays.append(delay)
        now += 0.01 + delay
    assert redial.misses == 8
    bases = [min(FIRST_BACKOFF * 2**i, MAX_BACKOFF) for i in range(8)]
    assert all(0.5 * b <= d < 1.5 * b for d, b in zip(delays, bases, strict=True))
    # A dial that held a tunnel for a while: the next dial follows at once, misses reset.
    delay = redial.after(now, now + HEALTHY_AFTER + 1, kept=True)
    assert redial.misses == 0 and delay < 1.5 * FIRST_BACKOFF
    # A tunnel that was kept but closed at once does not reset the back-off.
    redial.after(now, now + 0.1, kept=True)
    assert redial.after(now, now + 0.1, kept=True) >= 0.5 * 4 * FIRST_BACKOFF


def test_an_announcement_is_checked() -> None:
    assert parse_announcement({"kind": "proxies", "proxies": {"pa": A}}) == Announcement(
        {"pa": A})
    assert parse_announcement({"proxies": {"pa": A}, "as_of": T1.isoformat()}) == Announcement(
        {"pa": A}, T1)
    for bad in ({}, {"proxies": ["pa"]}, {"proxies": {"pa": 3}}, {"proxies": {"": A}},
                {"proxies": {"pa": "no port"}}, {"proxies": {}, "as_of": "yesterday"},
                {"proxies": {}, "as_of": "2026-01-01T00:00:00"}, {"proxies": {}, "as_of": 3},
                {"proxies": {f"p{i}": A for i in range(MAX_PROXIES + 1)}}):
        with pytest.raises(BadParameter):
            parse_announcement(bad)


def test_the_registry_newest_word_wins_so_a_removed_proxy_is_not_dialed_again() -> None:
    cover = Coverage(BALANCER)
    assert cover.announce(Announcement({"pa": A, "pb": B}, T1))
    assert cover.take("pa")
    # pb was removed (`gatectl rm proxy/pb`); pa heard it from the registry later on.
    assert cover.announce(Announcement({"pa": A}, T2))
    assert cover.missing() == [] and cover.loops() == 1
    # A proxy whose list is stale (its auth unreachable since T1) tells it again: ignored.
    assert not cover.announce(Announcement({"pa": A, "pb": B}, T1))
    assert not cover.announce(Announcement({"pa": A, "pb": B}))  # undated: as stale
    assert cover.missing() == [] and cover.loops() == 1
    assert {cover.address(m) for m in range(10)} == {BALANCER}  # pb is never dialed
    assert cover.announce(Announcement({"pa": A, "pc": C}, T2))  # as new: taken
    assert cover.missing() == ["pc"]


def test_undated_announcements_are_taken_until_a_dated_one_is() -> None:
    cover = Coverage(BALANCER)
    assert cover.announce(Announcement({"pa": A}))
    assert cover.announce(Announcement({"pa": A, "pb": B}))
    assert cover.missing() == ["pa", "pb"]
