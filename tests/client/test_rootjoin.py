"""The leaf's half of a join takes only the root's proxy as proxy_addr (issue 17, item 6):
the root's auth answers a join too, but never takes a tunnel."""

from __future__ import annotations

import pytest

from gatehouse.client.rootjoin import check_root_proxy
from gatehouse.errors import BadParameter
from tests.tunnel.relayed import Root

A, B = Root.new("root-a"), Root.new("root-b")
ADDR = "127.0.0.1:3025"
ADVICE = ("set proxy_addr to the root's proxy address (its proxy_service.public_addr, else "
          "its listen_addr); the token was not sent")


def test_the_roots_proxy_is_taken() -> None:
    check_root_proxy(A.host_der("proxy"), ADDR, "root-a")


@pytest.mark.parametrize(("der", "what"), [
    (A.host_der("auth"), "the auth service of root-a"),
    (A.host_der("node"), "the node service of root-a"),
    (B.host_der("proxy"), "the proxy service of root-b"),
    (A.user_der(), "a server with a user certificate of root-a"),
    (b"not a certificate", "a server without a Gatehouse identity"),
    (b"", "a server without a Gatehouse identity"),
])
def test_anything_else_is_refused_saying_what_it_is(der: bytes, what: str) -> None:
    with pytest.raises(BadParameter) as refused:
        check_root_proxy(der, ADDR, "root-a")
    assert str(refused.value) == f"proxy_addr {ADDR} is {what}, not the proxy of root-a: {ADVICE}"
