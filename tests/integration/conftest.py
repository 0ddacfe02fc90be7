"""Fixtures: whole clusters of real `gatehouse` processes in a few lines (on
``gatehouse.process.harness``).

- ``cluster``: one cluster per test module (auth + proxy + ssh service ``node1``),
  shared by tests that do not disturb each other (each uses its own users).
- ``alice``: a gsh profile logged in to that cluster as ``alice`` (role access,
  login root), shared by the module's tests; they must not log it out.
- ``fresh_cluster``: a cluster of the test's own, for tests that stop daemons
  or otherwise change shared state.
- ``client`` / ``make_client``: gsh profiles (GATEHOUSE_HOME) private to the test;
  ``username``: a user name no other test uses.

When a test fails, the logs of every process not stopped on purpose are attached
to its report. Clusters are sent SIGTERM when their scope ends and reaped (SIGKILL past
a deadline) before the session ends.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from gatehouse.process.harness import RUNNING, Client, Cluster, stop_all

_LOG_TAIL = 8000  # characters of each process log shown in a failure report


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    outcome = yield
    report = outcome.get_result()
    if report.failed and not hasattr(report, "wasxfail"):
        for daemon in [p for p in RUNNING if not p.stopping]:
            report.sections.append(
                (f"log of {daemon.name} (pid {daemon.pid}, {daemon.log})",
                 daemon.log_text()[-_LOG_TAIL:])
            )


@pytest.fixture(scope="session", autouse=True)
def _reap_processes() -> Iterator[None]:
    yield
    stop_all()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """A running one-node cluster shared by the tests of one module."""
    with Cluster(tmp_path_factory.mktemp("cluster")).running(wait=False) as c:
        yield c


@pytest.fixture(scope="module")
def alice(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Client:
    """Logged in to the module's cluster as alice (role access, login root); do not log out."""
    return cluster.logged_in("alice", tmp_path_factory.mktemp("alice-home"))


@pytest.fixture
def fresh_cluster(tmp_path: Path) -> Iterator[Cluster]:
    """A running one-node cluster of this test's own."""
    with Cluster(tmp_path / "cluster").running(wait=False) as c:
        yield c


@pytest.fixture
def make_client(tmp_path: Path) -> Callable[[Cluster], Client]:
    """Clients with profiles of their own under this test's tmp_path."""
    counter = itertools.count(1)

    def make(cluster: Cluster) -> Client:
        home = tmp_path / f"home{next(counter)}"
        home.mkdir()
        return Client(home, cluster.proxy)

    return make


@pytest.fixture
def client(cluster: Cluster, make_client: Callable[[Cluster], Client]) -> Client:
    """A gsh profile of this test's own for the module's cluster (not logged in)."""
    return make_client(cluster)


_user_numbers = itertools.count(1)


@pytest.fixture
def username(request: pytest.FixtureRequest) -> str:
    """A user name no other test uses (tests share a module's cluster)."""
    base = re.sub(r"[^A-Za-z0-9._-]", "-", request.node.name.removeprefix("test_"))[:40]
    return f"u{next(_user_numbers)}-{base}"
