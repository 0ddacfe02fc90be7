"""Row 6: new sessions per second through the root proxy to a leaf node, and their p99
setup latency; sshd (through one sshd jump, as `ssh -J`) measured the same way.

The load comes from ``bench.loadgen`` processes (one per core, closed loop:
``CONCURRENCY`` sessions at once in all, each followed at once by the next).
Little's law ties the two targets together: 250 sessions/s at 8 at once is
32 ms per session, well inside a p99 of 250 ms, so 8 at once can reach both
targets, and a server that cannot shows it as a lower rate. The first tenth
of the run is warm-up; the rest is cut into equal windows, and each window is
one repeat: its rate is the sessions completed in it per second, its p99 the
99th percentile of the setup latency of the sessions started in it (one that
never got set up counts as the whole run long).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import pwd
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.clusters import LEAF, LIGHT_LOGIN, NODE, Gatehouse
from bench.figures import Figure, absolute_figure
from bench.sshd import OpenSSH
from gatehouse.process.harness import HarnessError, Process, run

TARGET_RATE = 250.0
TARGET_P99_MS = 250.0
START_DELAY = 1.0  # seconds for the generators to import and load keys
CONCURRENCY = 8  # sessions at once, over all generator processes
LIGHT_LOGIN_TAG = "gatehouse benchmark (bench/load.py)"


@dataclass
class LoadResult:
    rates: list[float]  # sessions/s, per window
    p99s: list[float]  # ms, per window
    failed: int
    unfinished: int
    errors: Counter[str]
    generator_cpu: float  # share of one core, all generator processes together


def _p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(0.99 * len(ordered)) - 1)]


def run_load(dir: Path, side: str, extra: list[str], env: dict[str, str] | None, *,
             seconds: float, windows: int) -> LoadResult:
    procs = os.cpu_count() or 1
    start_at = time.time() + START_DELAY
    grace = 5.0
    gens = []
    for k in range(procs):
        out = dir / f"load-{side}-{k}.json"
        workers = CONCURRENCY // procs + (k < CONCURRENCY % procs)
        argv = [sys.executable, "-m", "bench.loadgen", side, "--workers", str(workers),
                "--seconds", str(seconds), "--start-at", str(start_at),
                "--grace", str(grace), "--out", str(out), *extra]
        gens.append((Process(f"load generator {side} {k}", argv, dir / f"load-{side}-{k}.log",
                             env=env, cwd=Path(__file__).parent.parent).start(), out))
    samples: list[list[Any]] = []
    errors: Counter[str] = Counter()
    cpu = 0.0
    for daemon, out in gens:
        rc = daemon.wait(START_DELAY + seconds + grace + 30)
        if rc is None:
            daemon.stop()
            raise HarnessError(f"{daemon.name} did not finish (log: {daemon.log})")
        if rc != 0 or not out.exists():
            raise HarnessError(f"{daemon.name} failed: {daemon.last_line()} (log: {daemon.log})")
        result = json.loads(out.read_text())
        samples += result["samples"]
        errors.update(result["errors"])
        cpu += result["cpu"]
    return _windows(samples, errors, cpu, seconds=seconds, windows=windows,
                    longest=seconds + grace)


def _windows(samples: list[list[Any]], errors: Counter[str], cpu: float, *,
             seconds: float, windows: int, longest: float) -> LoadResult:
    warmup = seconds / 10
    width = (seconds - warmup) / windows
    rates, p99s = [], []
    for w in range(windows):
        lo, hi = warmup + w * width, warmup + (w + 1) * width
        done = sum(1 for begin, _, total in samples
                   if total is not None and lo <= begin + total < hi)
        setups = [(setup if setup is not None else longest) * 1000
                  for begin, setup, _ in samples if lo <= begin < hi]
        rates.append(done / width)
        p99s.append(_p99(setups) if setups else longest * 1000)
    failed = sum(errors.values())
    unfinished = sum(1 for _, setup, _ in samples if setup is None) - failed
    return LoadResult(rates, p99s, failed, unfinished, errors, cpu / seconds)


def _describe(side: str, r: LoadResult) -> str:
    text = f"{side}: {r.generator_cpu:.0%} of a core in the load generators"
    if r.failed or r.unfinished:
        top = r.errors.most_common(1)
        text += (f", {r.failed} failed, {r.unfinished} unfinished"
                 + (f" (e.g. {top[0][0]})" if top else ""))
    return text


@contextlib.contextmanager
def light_login() -> Iterator[str]:
    """A login whose shell is /bin/sh with no start-up files, for the duration.

    root's bash on this machine sources ~/.bashrc for every SSH command (Debian's
    bash does when SSH_CLIENT is set, under sshd and a Gatehouse node alike), and
    that .bashrc runs `pyenv init`: ~120 ms of CPU and ~250 ms per session, which
    would cap both sides near 10 sessions/s and measure bash, not the access plane.
    The login is made here (system account, no home, no password: it can log in
    only with the bench's own client key) and removed at the end. One left behind
    by an interrupted run is recognised by its comment and replaced; an account of
    that name that the bench did not make is never used.
    """
    try:
        if pwd.getpwnam(LIGHT_LOGIN).pw_gecos != LIGHT_LOGIN_TAG:
            raise HarnessError(f"a user {LIGHT_LOGIN} exists that the benchmark did not make")
        run(["userdel", LIGHT_LOGIN]).ok()
    except KeyError:
        pass
    run(["useradd", "--system", "--no-create-home", "--home-dir", "/nonexistent",
         "--shell", "/bin/sh", "--password", "*", "--comment", LIGHT_LOGIN_TAG,
         LIGHT_LOGIN]).ok()
    try:
        yield LIGHT_LOGIN
    finally:
        run(["userdel", LIGHT_LOGIN]).ok()


def measure(gh: Gatehouse, sshd: OpenSSH, dir: Path, *, seconds: float,
            windows: int) -> list[Figure]:
    with light_login() as login:
        ours = run_load(dir, "gatehouse", ["--node", NODE, "--cluster", LEAF,
                                           "--login", login], gh.client.env(),
                        seconds=seconds, windows=windows)
        theirs = run_load(dir, "openssh", ["--port", str(sshd.port),
                                           "--key", str(sshd.client_key),
                                           "--host-key", str(sshd.host_key_pub),
                                           "--login", login], None,
                          seconds=seconds, windows=windows)
    note = (f"{CONCURRENCY} sessions at once (closed loop) for {seconds:g} s per side, "
            f"{os.cpu_count()} generator processes on the same cores; session = connect, "
            f"auth, exec `true` as login {LIGHT_LOGIN} (/bin/sh, see bench/load.py), exit; "
            f"OpenSSH through one sshd jump; "
            f"{_describe('Gatehouse', ours)}; {_describe('OpenSSH', theirs)}")
    rate = absolute_figure(
        "session_rate", "new sessions/s via root proxy → leaf node", ours.rates, "sessions/s",
        limit=TARGET_RATE, better="higher", openssh=theirs.rates, note=note,
        target=f"≥ {TARGET_RATE:g}/s with p99 ≤ {TARGET_P99_MS:g} ms")
    p99 = absolute_figure(
        "session_p99", "p99 session setup latency at that load", ours.p99s, "ms",
        limit=TARGET_P99_MS, better="lower", openssh=theirs.p99s,
        target=f"≤ {TARGET_P99_MS:g} ms at ≥ {TARGET_RATE:g}/s")
    rate.met = p99.met = rate.met and p99.met  # one target: both at once
    return [rate, p99]
