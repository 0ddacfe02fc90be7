"""Addresses as text: splitting "host:port", and where a client dials a listener."""

from __future__ import annotations

import pytest

from gatehouse._sys.hostport import dial_addr, split_host_port
from gatehouse.errors import BadParameter


@pytest.mark.parametrize(
    ("listen", "dial"),
    [
        ("0.0.0.0:3080", "127.0.0.1:3080"),
        ("[::]:3080", "127.0.0.1:3080"),
        ("127.0.0.1:3080", "127.0.0.1:3080"),
        ("10.1.2.3:22", "10.1.2.3:22"),
        ("[::1]:3022", "[::1]:3022"),
        ("proxy.example.com:443", "proxy.example.com:443"),
    ],
)
def test_dial_addr_turns_wildcards_into_loopback(listen: str, dial: str) -> None:
    assert dial_addr(listen) == dial
    assert split_host_port(dial)[1] == split_host_port(listen)[1]


@pytest.mark.parametrize("addr", [":3080", "0.0.0.0", "::1:3022", "0.0.0.0:0"])
def test_dial_addr_refuses_what_is_not_an_address(addr: str) -> None:
    with pytest.raises(BadParameter):
        dial_addr(addr)
