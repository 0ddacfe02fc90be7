"""`gatehouse demo`, run as a script would: in the background with no terminal, until
SIGTERM. Its tour names the seed's clusters, every next step it prints works as
printed, and SIGTERM, even while it is starting, leaves no process behind."""

from __future__ import annotations

import os
import shutil
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from gatehouse.process.harness import (
    GATEHOUSE,
    Process,
    Result,
    base_env,
    run,
    wait_for,
)

ROOT, LEAVES = "sso.example.com", ("us-east-1a", "us-east-1b")
READY = "Ctrl-C stops the three clusters."


def _processes_naming(directory: Path) -> list[int]:
    """The processes whose command line names ``directory`` (the demo and its clusters)."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and str(directory).encode() in (entry / "cmdline"
                                                                    ).read_bytes():
                found.append(int(entry.name))
        except OSError:
            continue  # gone meanwhile
    return found


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[Process]:
    """`gatehouse demo --dir tmp/clusters`, started; afterwards nothing it started is left
    (a failed test's leftovers are killed by pid, then reported)."""
    clusters = tmp_path / "clusters"
    process = Process("gatehouse demo", [str(GATEHOUSE), "demo", "--dir", str(clusters)],
                      tmp_path / "demo.log", env=base_env(GATEHOUSE_HOME=str(tmp_path / "home")),
                      cwd=tmp_path).start()
    try:
        yield process
    finally:
        process.stop()
        left = _processes_naming(clusters)
        for pid in left:
            os.kill(pid, signal.SIGKILL)
        assert not left, f"processes of the demo left running: {left}"


def _stop(demo: Process, clusters: Path) -> None:
    demo.terminate()
    assert demo.wait(60) == 0, demo.output()
    wait_for("the demo's clusters to stop", lambda: not _processes_naming(clusters),
             timeout=5)


@pytest.mark.timeout(300)
def test_the_demo_names_the_clusters_and_its_next_steps_work(demo: Process,
                                                             tmp_path: Path) -> None:
    demo.wait_ready("its tour", lambda: READY in demo.output(), timeout=120)
    tour = demo.output()
    assert f"root {ROOT} (proxy 127.0.0.1:" in tour, tour
    assert f"with leaves {', '.join(LEAVES)}, joined over reverse tunnels." in tour, tour
    printed = tour.split("Try, in another terminal:\n", 1)[1].split("\nstate and logs:")[0]
    steps = [line.strip() for line in printed.splitlines()]
    home = tmp_path / "home"
    assert steps[0] == f"export GATEHOUSE_HOME={home}", tour
    if shutil.which("ssh") is None:  # OpenSSH's client: scripts/setup.sh installs it
        steps = [s for s in steps if "ssh -F" not in s]
    done: dict[str, Result] = {}
    for step in steps[1:]:
        done[step] = result = run(["bash", "-c", f"{steps[0]}; {step}"], cwd=tmp_path)
        assert result.rc == 0, result

    def out(part: str) -> str:
        return next(r.out for step, r in done.items() if part in step)

    for cluster in (ROOT, *LEAVES):
        assert f"{cluster} " in out("gsh clusters") and f"{cluster} " in out("gsh ls --all")
    assert all("online" in line for line in out("gsh clusters").splitlines()[1:])
    assert out("gsh ssh --cluster=us-east-1a").splitlines()[-1] == "root"
    if shutil.which("ssh"):
        assert out("ssh -F ssh_config") == "hi\n"
    assert out(" get rc").count("connection: online") == 2
    assert {"session.start", "alice"} <= set(out(" events --type=session.start").split())
    assert "name: sso.example.com" in out(" get trusted_cluster")
    _stop(demo, tmp_path / "clusters")


def test_sigterm_while_the_demo_starts_stops_what_it_started(demo: Process,
                                                            tmp_path: Path) -> None:
    clusters = tmp_path / "clusters"
    demo.wait_ready("a cluster started", lambda: any(clusters.glob("*/gatehouse.log")),
                    timeout=60)
    assert READY not in demo.output()
    _stop(demo, clusters)
