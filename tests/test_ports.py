"""The harness's loopback ports: below the kernel's ephemeral range (which outgoing
connections draw from), one slice per pytest-xdist worker, never one in use."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from gatehouse.process import ports
from gatehouse.process.ports import LOWEST, free_ports


def ephemeral_start() -> int:
    return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])


def test_ports_are_different_free_and_below_the_ephemeral_range() -> None:
    picked = free_ports(5)
    assert len(set(picked)) == 5
    assert all(LOWEST <= port < ephemeral_start() for port in picked)
    for port in picked:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port))


def test_each_worker_has_its_own_slice(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTEST_XDIST_WORKER_COUNT", "4")
    slices = []
    for worker in range(4):
        monkeypatch.setenv("PYTEST_XDIST_WORKER", f"gw{worker}")
        slices.append(set(ports._slice()))
    assert all(len(s) > 1000 for s in slices)
    assert len(set().union(*slices)) == sum(len(s) for s in slices)  # disjoint


def test_a_port_in_use_is_skipped_and_running_out_says_so(
        monkeypatch: pytest.MonkeyPatch) -> None:
    base = free_ports(1)[0]
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", base))
        taken.listen()
        monkeypatch.setattr(ports, "_slice", lambda: range(base, base + 1))
        monkeypatch.setattr(ports, "_turn", None)
        with pytest.raises(OSError, match="no 1 free loopback ports"):
            free_ports(1)
