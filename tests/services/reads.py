"""A backend wrapper that counts reads, for tests of what is served from memory."""

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
