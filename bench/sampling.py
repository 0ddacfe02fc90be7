"""What the benchmark reads of a running process: CPU time, RSS, and a wait for quiet.

Starting and stopping the processes is gatehouse.process.harness's job.
"""

from __future__ import annotations

import time
from pathlib import Path

from gatehouse.process.harness import HarnessError


def cpu_seconds(pid: int) -> float:
    """CPU time of a process's live threads so far, in seconds, to the nanosecond.

    From each /proc/PID/task/TID/schedstat (time on a CPU, in ns), not from
    utime + stime in /proc/PID/stat: those count 10 ms clock ticks, too coarse for
    an idle process over a few seconds. A thread that exits takes its time with it;
    Gatehouse's threads (event loop, backend, resolver pool) live as long as it does.
    """
    total = 0
    tasks = Path(f"/proc/{pid}/task")
    for task in tasks.iterdir():
        try:
            total += int((task / "schedstat").read_text().split()[0])
        except FileNotFoundError:  # the thread exited meanwhile
            continue
    return total / 1e9


def rss_bytes(pid: int) -> int:
    """VmRSS of a process (from /proc/PID/status)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise HarnessError(f"no VmRSS for pid {pid}")


def settle(pids: list[int], *, quiet: float = 0.05, window: float = 0.25,
           timeout: float = 10.0) -> None:
    """Wait (bounded) until the given processes together use under ``quiet`` of a core,
    so that background work (uploads, audit) of one measurement does not bleed into
    the next."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        before = sum(_cpu_or_zero(p) for p in pids)
        time.sleep(window)
        if sum(_cpu_or_zero(p) for p in pids) - before < quiet * window:
            return


def _cpu_or_zero(pid: int) -> float:
    try:
        return cpu_seconds(pid)
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
