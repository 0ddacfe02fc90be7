"""A daemon checks that it can listen where its config says before it creates anything."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from gatehouse.config import AuthSection, Config, ProxySection, SSHSection
from gatehouse.errors import BadParameter
from gatehouse.process.harness import free_ports
from gatehouse.process.listeners import check_listen_addrs, listen_addrs


@pytest.fixture
def held() -> Iterator[int]:
    """A loopback port something listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def config(auth: int, proxy: int, *, ssh: bool = False) -> Config:
    return Config(auth_service=AuthSection(enabled=True, listen_addr=f"127.0.0.1:{auth}"),
                  proxy_service=ProxySection(enabled=True, listen_addr=f"127.0.0.1:{proxy}"),
                  ssh_service=SSHSection(enabled=ssh))


def test_only_enabled_services_listen() -> None:
    assert listen_addrs(config(1, 2)) == [("auth_service.listen_addr", "127.0.0.1:1"),
                                          ("proxy_service.listen_addr", "127.0.0.1:2")]


def test_free_ports_pass() -> None:
    check_listen_addrs(config(*free_ports(2)), Path("gatehouse.yaml"))


def test_a_port_in_use_names_the_file_the_key_and_the_fix(held: int) -> None:
    [free] = free_ports(1)
    with pytest.raises(BadParameter) as info:
        check_listen_addrs(config(free, held), Path("/etc/gatehouse.yaml"))
    assert str(info.value) == (
        f"/etc/gatehouse.yaml: proxy_service.listen_addr 127.0.0.1:{held} is already in use: "
        "is another gatehouse running? Stop it, or set proxy_service.listen_addr to a free port")


def test_without_a_config_it_says_how_to_give_one(held: int) -> None:
    with pytest.raises(BadParameter, match=r"to a free port in a config file "
                                           r"\(gatehouse start -c FILE\)$"):
        check_listen_addrs(config(held, free_ports(1)[0]), None)


def test_an_address_not_on_this_host_is_named() -> None:
    cfg = config(*free_ports(2))
    cfg.auth_service.listen_addr = "192.0.2.1:3025"  # TEST-NET-1: never a local address
    with pytest.raises(BadParameter, match=r"^cannot listen on 192\.0\.2\.1:3025 "
                                           r"\(auth_service\.listen_addr\): [^(]*$"):
        check_listen_addrs(cfg, None)
