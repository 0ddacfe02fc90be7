"""What the benchmark reads of a process: CPU time, RSS, and waits (for quiet, for an exit).

Starting and stopping the processes is gatehouse.process.harness's job.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import subprocess
import time
from collections.abc import Iterator
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


def process_cpu(pid: int, *, children: bool = False) -> float:
    """CPU seconds a process used so far (user + system, from /proc/PID/stat), with
    its threads that exited; with ``children``, also the children it waited for
    (how an sshd's connections count: each is a process of its own that it reaps).

    Counted in clock ticks (10 ms): for a figure over seconds of work, such as a
    GiB streamed, where a thread that came and went must count too (cpu_seconds
    is for short idle windows).
    """
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    # fields[0] is the state (field 3 of proc(5)): utime, stime, cutime, cstime are 14-17
    ticks = int(fields[11]) + int(fields[12])
    if children:
        ticks += int(fields[13]) + int(fields[14])
    return ticks / os.sysconf("SC_CLK_TCK")


def wait_childless(pid: int, timeout: float) -> None:
    """Wait (bounded) until a process has no child left (an sshd, once it reaped the
    connections of a run), so that their CPU is in its own children's count."""
    deadline = time.monotonic() + timeout
    tasks = Path(f"/proc/{pid}/task")
    while time.monotonic() < deadline:
        if not any((task / "children").read_text().strip() for task in tasks.iterdir()):
            return
        time.sleep(0.02)
    raise HarnessError(f"process {pid} still had children after {timeout:g} s")


PR_SET_CHILD_SUBREAPER = 36  # prctl(2)


@contextlib.contextmanager
def adopting_orphans() -> Iterator[None]:
    """While inside, this process reaps its descendants' orphans (prctl(2)), so that a
    command's helper that outlives it stays ours to wait for, and its CPU can be
    counted: ssh's ProxyCommand (`gsh proxy ssh`), which ssh signals at its exit but
    does not wait for. Orphans adopted meanwhile stay ours (wait_adopted reaps them)."""
    libc = ctypes.CDLL(None, use_errno=True)

    def reaper(on: int) -> None:
        if libc.prctl(PR_SET_CHILD_SUBREAPER, on, 0, 0, 0) != 0:
            raise HarnessError("prctl(PR_SET_CHILD_SUBREAPER): "
                               f"{os.strerror(ctypes.get_errno())}")

    reaper(1)
    try:
        yield
    finally:
        reaper(0)


def descendants(pid: int) -> list[int]:
    """A process's descendants as of now (from /proc/PID/task/TID/children)."""
    found: list[int] = []
    todo = [pid]
    while todo:
        try:
            tasks = list(Path(f"/proc/{todo.pop()}/task").iterdir())
        except FileNotFoundError:  # it exited meanwhile
            continue
        for task in tasks:
            try:
                kids = [int(k) for k in (task / "children").read_text().split()]
            except FileNotFoundError:
                continue
            found += kids
            todo += kids
    return found


def wait_adopted(pids: list[int], timeout: float) -> float:
    """CPU seconds (user + system, from wait4) of ``pids``, orphans this process adopted
    (adopting_orphans), once each has exited; HarnessError for one still running after
    ``timeout``. One that its own parent waited for is not ours to wait for, and is in
    that parent's count already (0 here)."""
    deadline = time.monotonic() + timeout
    cpu, left = 0.0, set(pids)
    while left:
        for pid in list(left):
            try:
                done, _, usage = os.wait4(pid, os.WNOHANG)
            except ChildProcessError:
                left.discard(pid)
                continue
            if done:
                cpu += usage.ru_utime + usage.ru_stime
                left.discard(pid)
        if left and time.monotonic() >= deadline:
            raise HarnessError(f"processes {sorted(left)} still running after {timeout:g} s")
        if left:
            time.sleep(0.005)
    return cpu


def wait_child(proc: subprocess.Popen[bytes], timeout: float) -> tuple[int, float]:
    """Wait for a child of this process to exit: (its exit code, the CPU seconds it
    used, user + system, with the children it waited for), from wait4(2).
    subprocess.TimeoutExpired if it is still running after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            proc.returncode = os.waitstatus_to_exitcode(status)
            return proc.returncode, usage.ru_utime + usage.ru_stime
        if time.monotonic() >= deadline:
            raise subprocess.TimeoutExpired(proc.args, timeout)
        time.sleep(0.005)
