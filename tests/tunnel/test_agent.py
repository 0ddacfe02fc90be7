"""The leaf's agent follows the roots to dial: one link task per enabled root, stopped
and awaited when the root is disabled, moved, or the agent stops; and the links' backoff."""

from __future__ import annotations

import asyncio
import random

import pytest

from gatehouse.tunnel.agent import TunnelAgent
from gatehouse.tunnel.coverage import FIRST_BACKOFF, MAX_BACKOFF, Backoff
from gatehouse.tunnel.needs import Root

TIMEOUT = 5.0


class Links:
    """Fake links that log when they start and when they have finished stopping."""

    def __init__(self) -> None:
        self.log: list[str] = []
        self.changed = asyncio.Event()

    async def keep(self, root: Root) -> None:
        self.log.append(f"start {root.name}@{root.proxy_addr}")
        self.changed.set()
        try:
            await asyncio.Event().wait()
        finally:
            await asyncio.sleep(0)  # a link closes its tunnel before it is done
            self.log.append(f"end {root.name}@{root.proxy_addr}")
            self.changed.set()

    async def logged(self, count: int) -> list[str]:
        async with asyncio.timeout(TIMEOUT):
            while len(self.log) < count:
                self.changed.clear()
                await self.changed.wait()
        return self.log


def _root(name: str, addr: str = "root:3080") -> Root:
    return Root(name=name, proxy_addr=addr, host_ca_tls="CA of " + name)


async def test_the_agent_follows_the_roots_and_awaits_the_links_it_stops() -> None:
    roots = {"a": _root("a"), "b": _root("b")}
    updated = asyncio.Event()
    links = Links()
    agent = TunnelAgent(lambda: dict(roots), updated, links.keep)
    task = asyncio.create_task(agent.run())
    assert sorted(await links.logged(2)) == ["start a@root:3080", "start b@root:3080"]

    del roots["b"]  # disabled or removed
    roots["a"] = _root("a", "elsewhere:3080")  # moved: redial
    updated.set()
    log = await links.logged(5)
    # The old link of a has finished before its new one starts.
    assert log.index("end a@root:3080") < log.index("start a@elsewhere:3080")
    assert "end b@root:3080" in log

    roots["a"] = _root("a", "elsewhere:3080")  # the same root again: nothing to do
    updated.set()
    await asyncio.sleep(0)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    # Stopping the agent stops its links, and waits until they are done.
    assert links.log[5:] == ["end a@elsewhere:3080"]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_backoff_doubles_with_jitter_up_to_a_cap_and_starts_over(seed: int) -> None:
    backoff = Backoff(random.Random(seed))
    delays = [backoff.next() for _ in range(10)]
    bases = [min(FIRST_BACKOFF * 2**i, MAX_BACKOFF) for i in range(10)]
    assert all(0.5 * b <= d < 1.5 * b for d, b in zip(delays, bases, strict=True))
    again = Backoff(random.Random(seed))
    assert [again.next() for _ in range(10)] == delays  # the randomness is the caller's
    backoff.reset()
    assert 0.5 * FIRST_BACKOFF <= backoff.next() < 1.5 * FIRST_BACKOFF
