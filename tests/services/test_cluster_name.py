"""The cluster name a backend belongs to: the first claim stays."""

from __future__ import annotations

from gatehouse.backend import Backend
from gatehouse.services import cluster_name


async def test_the_first_claim_names_the_cluster_for_good(backend: Backend) -> None:
    assert await cluster_name.claim(backend, "root.example") == "root.example"
    assert await cluster_name.claim(backend, "root.example") == "root.example"
    assert await cluster_name.claim(backend, "other.example") == "root.example"
