"""Backend wrappers that count reads or writes, for tests of what is served from memory
and of what is written only when needed."""

from __future__ import annotations

from gatehouse.backend import Backend


class CountingReads:
    """Counts the reads a store makes of a real backend (wraps it; every call passes)."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self.reads = 0

    def __getattr__(self, name: str) -> object:
        if name in ("get", "get_range"):
            self.reads += 1
        return getattr(self.backend, name)


WRITES = ("put", "create", "update", "compare_and_swap", "atomic_write", "delete",
          "delete_range")


class CountingWrites:
    """Counts the writes a store asks of a real backend (wraps it; every call passes)."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self.writes = 0

    def __getattr__(self, name: str) -> object:
        if name in WRITES:
            self.writes += 1
        return getattr(self.backend, name)
