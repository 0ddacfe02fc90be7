"""The index of joined leaves' names (services/leafnames.py): what it finds nested, and
the leaves joined before it was kept, entered once."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest

from gatehouse.backend import Backend
from gatehouse.services.leafnames import LeafNames


async def _joined(backend: Backend, *names: str) -> LeafNames:
    index = LeafNames(backend)
    for name in names:
        await backend.atomic_write([index.write(name)])
    return index


@pytest.mark.parametrize(("name", "other"), [
    ("eu.us-east-1a", "us-east-1a"), ("us-east-1a", "eu.us-east-1a"),
    ("a.b.c.leaf.example.com", "leaf.example.com"), ("Us-East-1A", "us-east-1a"),
    ("leaf.example.com", "x.y.leaf.example.com")])
async def test_a_name_nested_with_a_joined_leaf_s_is_a_clash(backend: Backend, name: str,
                                                             other: str) -> None:
    index = await _joined(backend, "us-east-1b", other, "zz-leaf")
    assert await index.clash(name) == other


@pytest.mark.parametrize("name", ["us-east-1a", "xus-east-1a", "us-east-1ab", "east-1a",
                                  "us-east-1a.x"])
async def test_a_name_only_alike_or_its_own_is_no_clash(backend: Backend, name: str) -> None:
    index = await _joined(backend, "us-east-1a", "b.us-east-1a.x")
    expected = {"us-east-1a.x": "b.us-east-1a.x"}.get(name)
    assert await index.clash(name) == expected


async def test_a_removal_takes_only_the_leaf_s_own_entry(backend: Backend) -> None:
    index = await _joined(backend, "us-east-1a")
    assert await index.removal("US-EAST-1A") == []  # not its entry
    await backend.atomic_write(await index.removal("us-east-1a"))
    assert await index.clash("eu.us-east-1a") is None


async def test_leaves_joined_before_the_index_are_entered_once(backend: Backend) -> None:
    index = LeafNames(backend)
    reads = []

    def joined(*names: str) -> Callable[[], Awaitable[list[str]]]:
        async def read() -> list[str]:
            reads.append(names)
            return list(names)
        return read

    assert await index.index_existing(joined("us-east-1a", "US-EAST-1A",
                                             "leaf.example.com")) == 2
    assert await index.clash("eu.us-east-1a") == "us-east-1a"  # the first of the two kept it
    assert await index.clash("x.leaf.example.com") == "leaf.example.com"
    # Once: later joins enter themselves, and the leaves are not read again at each start.
    assert await index.index_existing(joined("other-1")) == 0
    assert reads == [("us-east-1a", "US-EAST-1A", "leaf.example.com")]
    assert await index.clash("a.other-1") is None
