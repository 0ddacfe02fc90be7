"""The heap thresholds: freed buffers stay mapped (no page faults per packet)."""

from __future__ import annotations

import resource

from gatehouse._sys.heap import keep_freed_memory


def _minor_faults_per_round(rounds: int) -> float:
    """Minor page faults per round of allocating, touching and freeing 256 KiB buffers,
    as a stream's packets do (a few alive at once)."""
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(rounds):
        held = [bytes(256 << 10) for _ in range(4)]
        del held
    return (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / rounds


def test_freed_buffers_are_reused_without_faulting_pages_in_again() -> None:
    assert keep_freed_memory()  # glibc, as on the machines Gatehouse runs on
    _minor_faults_per_round(50)  # the heap grows once
    # 4 x 256 KiB = 256 pages per round if they were faulted in each time
    assert _minor_faults_per_round(500) < 8
