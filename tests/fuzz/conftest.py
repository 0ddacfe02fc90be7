"""The fuzz tests' time limit grows with GATEHOUSE_FUZZ_SCALE (see budget.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fuzz.budget import SCALE

_HERE = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if _HERE in item.path.parents:
            item.add_marker(pytest.mark.timeout(120 * SCALE))
