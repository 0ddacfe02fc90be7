"""Fixtures every unit test may use: a fake clock and an in-memory backend on it; and the
rule that a test may not skip where it can run: with ``CI=true`` (where the set-up
installed everything, OpenSSH included) no test may skip, and as root neither may the
tests marked ``needs_netns``: there, a skip fails the run."""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import AsyncIterator, Generator
from typing import Any

import pytest

from gatehouse.backend import Backend, open_backend
from gatehouse.clock import FakeClock
from tests import pgserver

from . import etcdserver


@pytest.fixture
def clock() -> FakeClock:
    # Starts at the real time: certificates issued on it also meet real TLS stacks,
    # which check validity against the system clock.
    return FakeClock(dt.datetime.now(dt.UTC).replace(microsecond=0))


@pytest.fixture(scope="session", autouse=True)
def _etcd_at_end() -> Generator[None]:
    """Stops the run's etcd (tests/etcdserver.py), if a test started it."""
    yield
    etcdserver.stop_shared()


@pytest.fixture
def etcd() -> etcdserver.EtcdServer:
    """This test process's etcd server (started on first use); each test takes its own
    prefix."""
    return etcdserver.shared()


@pytest.fixture
async def backend(clock: FakeClock) -> AsyncIterator[Backend]:
    backend = await open_backend("memory", path=None, clock=clock)
    yield backend
    await backend.close()


NEEDS_NETNS = "needs_netns"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", f"{NEEDS_NETNS}: needs root and network namespaces; a skip of it fails "
        "the run as root or with CI=true (the no-ingress proof may not go missing quietly)")


def _must_run(item: pytest.Item) -> str:
    """Why ``item`` may not skip here ("" when it may)."""
    if os.environ.get("CI", "").lower() == "true":
        return "CI=true"
    if item.get_closest_marker(NEEDS_NETNS) and os.geteuid() == 0:
        return "running as root"
    return ""


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]
                              ) -> Generator[None, Any, None]:
    outcome = yield
    report = outcome.get_result()
    why = _must_run(item)
    if report.skipped and why and not hasattr(report, "wasxfail"):
        skipped = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.outcome = "failed"
        report.longrepr = f"{item.nodeid} may not skip ({why}): {skipped}"


@pytest.fixture(scope="session", autouse=True)
def _stop_pg_server() -> Generator[None, None, None]:
    """Stops the PostgreSQL server a test started (tests/pgserver.py), if any."""
    yield
    pgserver.stop_shared()


@pytest.fixture(scope="session")
def pg_server() -> pgserver.PgServer:
    return pgserver.shared()
