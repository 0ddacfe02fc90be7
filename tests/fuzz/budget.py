"""How long each fuzzer runs: CI's budget keeps the whole of tests/fuzz near a minute on
two cores; GATEHOUSE_FUZZ_SCALE=N (README) runs N times as many examples."""

from __future__ import annotations

import os
import tracemalloc
from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, settings

SCALE = int(os.environ.get("GATEHOUSE_FUZZ_SCALE", "1"))


def fuzz(examples: int, *, steps: int | None = None) -> settings:
    """``examples`` (times SCALE) with no deadline: a slow machine is not a failure;
    ``steps`` bounds a stateful test's rules per example."""
    return settings(max_examples=examples * SCALE, deadline=None,
                    stateful_step_count=steps or settings.default.stateful_step_count,
                    suppress_health_check=[HealthCheck.too_slow])


def peak_bytes(call: Callable[[], object], raises: type[Exception] | None = None) -> int:
    """The most memory ``call`` held at once (tracemalloc); it must raise ``raises``."""
    tracemalloc.start()
    try:
        if raises is None:
            call()
        else:
            with pytest.raises(raises):
                call()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
