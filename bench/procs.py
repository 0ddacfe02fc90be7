"""Processes the benchmark starts: bounded commands, long-running daemons, and cleanup.

Every daemon is registered in ``RUNNING`` when it starts and stopped by
``stop_all`` (SIGTERM, then SIGKILL past a grace period); an ``atexit`` hook
kills whatever is left, so nothing outlives a run, however it ends. Daemons
run in their own session, so a Ctrl-C in the terminal reaches only the
harness, which then stops them in order.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

BIN = Path(sys.executable).parent
CMD_TIMEOUT = 60.0  # any single command
STOP_GRACE = 5.0  # SIGTERM grace before SIGKILL


class BenchError(Exception):
    """The harness itself cannot go on (not a missed target): one line for the user."""


def free_ports(count: int) -> list[int]:
    """Loopback ports nobody listens on right now (held together so that they differ)."""
    socks = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def base_env(**extra: str) -> dict[str, str]:
    """The environment for every child: the venv's scripts first, no stray profile."""
    env = dict(os.environ)
    env.pop("GATEHOUSE_HOME", None)
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '/usr/bin:/bin')}"
    env.update(extra)
    return env


@dataclass(frozen=True)
class Result:
    argv: tuple[str, ...]
    rc: int
    out: str
    err: str
    seconds: float

    def check(self) -> Result:
        """Self if it succeeded; BenchError naming the command and its last stderr line."""
        if self.rc != 0:
            last = (self.err.strip().splitlines() or ["(no stderr)"])[-1]
            raise BenchError(f"`{' '.join(self.argv)}` exited {self.rc}: {last}")
        return self


def run(argv: list[str], *, env: dict[str, str] | None = None, input: str | None = None,
        timeout: float = CMD_TIMEOUT) -> Result:
    """Run a command to completion (BenchError past ``timeout``), timing it."""
    start = time.perf_counter()
    try:
        proc = subprocess.run(argv, input=input, capture_output=True, text=True, timeout=timeout,
                              env=env or base_env(),
                              stdin=None if input is not None else subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise BenchError(f"`{' '.join(argv)}` did not finish within {timeout:.0f} s") from None
    except OSError as exc:
        raise BenchError(f"cannot run {argv[0]}: {exc.strerror}") from None
    return Result(tuple(argv), proc.returncode, proc.stdout, proc.stderr,
                  time.perf_counter() - start)


def wait_for(what: str, check: Callable[[], object], timeout: float,
             interval: float = 0.1) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise BenchError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


class Daemon:
    """A long-running child with its output in ``log``; registered until stopped."""

    def __init__(self, name: str, argv: list[str], log: Path, *,
                 env: dict[str, str] | None = None, cwd: Path | None = None) -> None:
        if _closing.is_set():  # a set-up thread still going after the run ended
            raise BenchError(f"not starting {name}: the run is over")
        self.name = name
        self.log = log
        with log.open("ab") as out:
            self.proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                env=env or base_env(), cwd=cwd, start_new_session=True)
        RUNNING.append(self)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log_text(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def last_line(self) -> str:
        """The log's last line that says something (not a traceback's box drawing)."""
        lines = [line.strip(" |+") for line in self.log_text().splitlines()]
        lines = [line for line in lines if any(c.isalpha() for c in line)]
        text = lines[-1] if lines else "(empty log)"
        return text if len(text) <= 160 else text[:157] + "..."

    def wait_ready(self, what: str, check: Callable[[], object], timeout: float) -> None:
        """Poll ``check``; fail early, naming the log's last line, if the process died."""
        deadline = time.monotonic() + timeout
        while not check():
            if not self.alive():
                raise BenchError(f"{self.name} exited with {self.proc.returncode} before "
                                 f"{what}: {self.last_line()} (log: {self.log})")
            if time.monotonic() > deadline:
                raise BenchError(f"{self.name}: no {what} within {timeout:.0f} s "
                                 f"(log: {self.log})")
            time.sleep(0.05)

    def terminate(self) -> None:
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGTERM)

    def wait_stopped(self) -> None:
        try:
            self.proc.wait(STOP_GRACE)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(STOP_GRACE)
        if self in RUNNING:
            RUNNING.remove(self)

    def stop(self) -> None:
        self.terminate()
        self.wait_stopped()


RUNNING: list[Daemon] = []
_closing = threading.Event()


def stop_all(*, final: bool = False) -> None:
    """Stop every running daemon: SIGTERM to all at once, then wait (SIGKILL if slow).
    ``final``: no daemon may start after this (threads of an interrupted set-up)."""
    if final:
        _closing.set()
    daemons = list(reversed(RUNNING))
    for d in daemons:
        d.terminate()
    for d in daemons:
        d.wait_stopped()


@atexit.register
def _kill_leftovers() -> None:
    for d in RUNNING:
        if d.alive():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(d.proc.pid, signal.SIGKILL)


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
    raise BenchError(f"no VmRSS for pid {pid}")


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
