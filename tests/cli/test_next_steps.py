"""What `gatehouse start` prints once it is up: the next steps only where they work."""

from __future__ import annotations

from pathlib import Path

from gatehouse.cli.gatehouse import _next_steps
from gatehouse.config import AuthSection, Config, ProxySection, SSHSection
from gatehouse.process.daemon import Started

CONFIG = Path("/etc/gatehouse.yaml")


def test_a_whole_cluster_shows_the_tour() -> None:
    cfg = Config(auth_service=AuthSection(enabled=True), proxy_service=ProxySection(enabled=True),
                 ssh_service=SSHSection(enabled=True))
    text = _next_steps(cfg, Started("c", {"auth": "127.0.0.1:3025", "proxy": "127.0.0.1:3080",
                                          "ssh": "127.0.0.1:3022"}), CONFIG)
    assert f"gatectl -c {CONFIG} users add alice" in text
    assert f"gsh ssh root@{cfg.gatehouse.nodename} 'echo hi'" in text


def test_without_a_node_here_there_is_no_ssh_line() -> None:
    cfg = Config(auth_service=AuthSection(enabled=True), proxy_service=ProxySection(enabled=True))
    text = _next_steps(cfg, Started("c", {"auth": "127.0.0.1:3025", "proxy": "127.0.0.1:3080"}),
                       CONFIG)
    assert "gsh ssh" not in text and text.endswith("gsh ls")


def test_a_proxy_of_its_own_shows_no_gatectl_steps() -> None:
    """Its config names no auth of this process: `gatectl -c` with it cannot add users."""
    cfg = Config(proxy_service=ProxySection(enabled=True))
    text = _next_steps(cfg, Started("c", {"proxy": "127.0.0.1:3080"}), CONFIG)
    assert text == (f"gatehouse: cluster c is up (proxy on 127.0.0.1:3080); its data is in "
                    f"{cfg.data_dir}")
