"""Fixtures every unit test may use: a fake clock and an in-memory backend on it; and the
rule that tests marked ``needs_netns`` may not skip where they can run (as root, or
with ``CI=true``): there, a skip of theirs fails the run."""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import AsyncIterator, Generator
from typing import Any

import pytest

from gatehouse.backend import Backend, open_backend
from gatehouse.clock import FakeClock


@pytest.fixture
def clock() -> FakeClock:
    # Starts at the real time: certificates issued on it also meet real TLS stacks,
    # which check validity against the system clock.
    return FakeClock(dt.datetime.now(dt.UTC).replace(microsecond=0))


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


def _netns_required() -> str:
    """Why a test marked needs_netns must run here ("" when it may skip)."""
    if os.geteuid() == 0:
        return "running as root"
    if os.environ.get("CI", "").lower() == "true":
        return "CI=true"
    return ""


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]
                              ) -> Generator[None, Any, None]:
    outcome = yield
    report = outcome.get_result()
    why = _netns_required()
    if report.skipped and why and item.get_closest_marker(NEEDS_NETNS) \
            and not hasattr(report, "wasxfail"):
        skipped = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.outcome = "failed"
        report.longrepr = f"{item.nodeid} may not skip ({why}): {skipped}"
