"""An owner for tasks started from callbacks, where no TaskGroup can be entered.

A protocol's ``connection_made`` or a server's accept callback is synchronous, so
the tasks it starts cannot join an ``async with asyncio.TaskGroup()``. They join a
TaskOwner instead, and the service that holds it cancels and awaits them all in
``close`` (bounded: a task that ignores cancellation is logged, not waited for
forever). A task's unexpected failure is logged; it does not stop its siblings.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine, Iterable
from typing import Any

__all__ = ["SHUTDOWN_GRACE", "TaskOwner"]

log = logging.getLogger(__name__)

SHUTDOWN_GRACE = 5.0  # seconds a cancelled task may take to finish


class TaskOwner:
    """The running tasks of one service or connection (``what`` names it in logs)."""

    def __init__(self, what: str) -> None:
        self._what = what
        self._tasks: set[asyncio.Task[None]] = set()

    def __len__(self) -> int:
        return len(self._tasks)

    def spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._finished)
        return task

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("a task of %s failed", self._what, exc_info=task.exception())

    def cancel(self) -> None:
        """Ask every task to stop (from a synchronous callback); ``close`` awaits them."""
        for task in self._tasks:
            _cancel_once(task)

    async def stop(self, tasks: Iterable[asyncio.Task[None]],
                   grace: float = SHUTDOWN_GRACE) -> None:
        """Cancel some of these tasks and wait until they have finished."""
        await self._cancel_and_wait(set(tasks), grace)

    async def close(self, grace: float = SHUTDOWN_GRACE) -> None:
        """Cancel every task and wait until all have finished, at most ``grace`` seconds."""
        await self._cancel_and_wait(set(self._tasks), grace)

    async def _cancel_and_wait(self, tasks: set[asyncio.Task[None]], grace: float) -> None:
        if not tasks:
            return
        for task in tasks:
            _cancel_once(task)
        _, pending = await asyncio.wait(tasks, timeout=grace)
        if pending:
            log.error("%d task(s) of %s ignored cancellation for %g s", len(pending),
                      self._what, grace)


def _cancel_once(task: asyncio.Task[None]) -> None:
    """Cancel a task not yet asked to stop: a second request would interrupt the
    clean-up the first one started (a ``finally`` that awaits)."""
    if not task.cancelling():
        task.cancel()
