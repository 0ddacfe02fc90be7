"""New sessions per second through the root proxy to a leaf node, and their p99 setup
latency, against sshd through one sshd jump (as `ssh -J`) measured the same way; and
the CPU each Gatehouse process spends per session meanwhile (schedstat, in ns).

The load comes from ``bench.loadgen`` processes (one per core, closed loop:
``CONCURRENCY`` sessions at once in all, each followed at once by the next).
The target is a ratio to OpenSSH in the same run (two cores cannot carry an
absolute 250/s for any SSH stack here, as measured): at least TARGET_RATIO times
its rate, with a p99 no worse than its own. The first tenth
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
from bench.figures import Figure, absolute_figure, ratio_figure
from bench.sampling import cpu_seconds
from bench.sshd import OpenSSH
from gatehouse.process.harness import HarnessError, Process, run

TARGET_RATIO = 1.75  # sessions/s, Gatehouse root -> leaf over OpenSSH through one jump
TARGET_LEAF_CPU_MS = 8.0  # the leaf's auth+proxy process, CPU per session
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
    completed: int  # sessions finished over the whole run, warm-up included
    cpu_seconds: float  # the generators' CPU over the run, in seconds


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
    completed = sum(1 for _, _, total in samples if total is not None)
    return LoadResult(rates, p99s, failed, unfinished, errors, cpu / seconds, completed, cpu)


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


def _per_session_ms(gh: Gatehouse, before: dict[str, float],
                    ours: LoadResult) -> dict[str, float]:
    """CPU per completed session, by process, over the Gatehouse load run."""
    after = _cpu_by_process(gh)
    per = {name: (after[name] - before[name]) * 1000 / max(ours.completed, 1) for name in before}
    per["load generator"] = ours.cpu_seconds * 1000 / max(ours.completed, 1)
    return per


def _cpu_by_process(gh: Gatehouse) -> dict[str, float]:
    node = gh.leaf.nodes[NODE]
    assert gh.root.daemon is not None and gh.leaf.daemon is not None and node is not None
    return {"root auth+proxy": cpu_seconds(gh.root.daemon.pid),
            "leaf auth+proxy": cpu_seconds(gh.leaf.daemon.pid),
            "leaf node": cpu_seconds(node.pid)}


def measure(gh: Gatehouse, sshd: OpenSSH, dir: Path, *, seconds: float,
            windows: int) -> list[Figure]:
    with light_login() as login:
        before = _cpu_by_process(gh)
        ours = run_load(dir, "gatehouse", ["--node", NODE, "--cluster", LEAF,
                                           "--login", login], gh.client.env(),
                        seconds=seconds, windows=windows)
        per_session = _per_session_ms(gh, before, ours)
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
    rate = ratio_figure(
        "session_rate", "new sessions/s via root proxy → leaf node", ours.rates, theirs.rates,
        "sessions/s", limit=TARGET_RATIO, better="higher", note=note)
    p99 = ratio_figure(
        "session_p99", "p99 session setup latency at that load", ours.p99s, theirs.p99s, "ms",
        limit=1.0, better="lower")
    rate.met = p99.met = rate.met and p99.met  # one target: both at once
    cpu = absolute_figure(
        "cpu_per_session", "leaf auth+proxy CPU per session", [per_session["leaf auth+proxy"]],
        "ms", limit=TARGET_LEAF_CPU_MS, better="lower",
        note="CPU per completed session over the Gatehouse load run, by process "
             "(schedstat): " + ", ".join(f"{name} {ms:.1f} ms"
                                        for name, ms in per_session.items()))
    return [rate, p99, cpu]
