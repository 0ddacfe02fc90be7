"""gcsettings.settle(): what exists is frozen, and the young generation is YOUNG."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from gatehouse._sys import gcsettings


@pytest.fixture
def restored() -> Iterator[None]:
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


@pytest.mark.usefixtures("restored")
def test_settle_freezes_what_exists_and_widens_the_young_generation() -> None:
    held = [[i] for i in range(1_000)]  # tracked containers made before settle()
    gc.unfreeze()
    gcsettings.settle()
    assert gc.get_freeze_count() >= len(held)
    assert gc.get_threshold()[0] == gcsettings.YOUNG > 700
