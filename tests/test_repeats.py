"""Which repeated failures to record (gatehouse.repeats): pure, on plain numbers."""

from __future__ import annotations

from gatehouse.repeats import NAMES, Repeats


def test_the_first_of_a_window_is_recorded_the_rest_counted_when_it_ends() -> None:
    repeats: Repeats[str] = Repeats(window=60.0, keys=10)
    assert repeats.add("k", "f0", 0.0, name="alice")
    assert [repeats.add("k", f"f{i}", float(i), name="bob") for i in range(1, 4)] == [False] * 3
    assert repeats.due(59.9) == []
    [counted] = repeats.due(60.0)
    assert (counted.item, counted.count, counted.first, counted.names) == ("f3", 3, 1.0, ["bob"])
    assert repeats.add("k", "f4", 61.0)  # a new window
    assert len(repeats) == 1


def test_a_window_without_repeats_closes_silently() -> None:
    repeats: Repeats[str] = Repeats(window=10.0, keys=10)
    assert repeats.add("a", "x", 0.0) and repeats.add("b", "y", 5.0)
    assert repeats.due(100.0) == []
    assert len(repeats) == 0


def test_keys_are_independent_and_windows_close_in_order() -> None:
    repeats: Repeats[str] = Repeats(window=10.0, keys=10)
    for key, at in (("a", 0.0), ("b", 5.0), ("a", 6.0), ("b", 7.0), ("b", 8.0)):
        repeats.add(key, f"{key}@{at}", at)
    assert [(c.item, c.count) for c in repeats.due(10.0)] == [("a@6.0", 1)]
    assert [(c.item, c.count) for c in repeats.due(15.0)] == [("b@8.0", 2)]


def test_past_the_bound_a_failure_is_recorded_alone() -> None:
    repeats: Repeats[int] = Repeats(window=10.0, keys=2)
    assert all(repeats.add(key, 0, 0.0) for key in ("a", "b"))
    assert repeats.add("c", 0, 0.0) and repeats.add("c", 1, 0.0)  # no room to count "c"
    assert not repeats.add("a", 1, 0.0)
    assert len(repeats) == 2


def test_names_are_distinct_and_bounded() -> None:
    repeats: Repeats[int] = Repeats(window=10.0, keys=1)
    repeats.add("k", 0, 0.0)
    for i in range(NAMES * 3):
        repeats.add("k", i, 1.0, name=f"user{i % (NAMES + 5)}")
    [counted] = repeats.drain()
    assert counted.count == NAMES * 3
    assert counted.names == [f"user{i}" for i in range(NAMES)]
    assert len(repeats) == 0
