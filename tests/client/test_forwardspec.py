"""`gsh ssh -L` and `-R` specs as ssh(1) reads them."""

from __future__ import annotations

import pytest

from gatehouse.client.forwardspec import PortForward
from gatehouse.errors import BadParameter


@pytest.mark.parametrize(("spec", "listen", "dest"), [
    ("8080:db:5432", ("localhost", 8080), ("db", 5432)),  # localhost only by default
    ("127.0.0.1:8080:db:5432", ("127.0.0.1", 8080), ("db", 5432)),
    ("*:8080:db:5432", ("", 8080), ("db", 5432)),  # every address
    (":8080:db:5432", ("", 8080), ("db", 5432)),
    ("8080:[::1]:80", ("localhost", 8080), ("::1", 80)),
    ("[::1]:8080:[2001:db8::5]:80", ("::1", 8080), ("2001:db8::5", 80)),
])
def test_specs(spec: str, listen: tuple[str, int], dest: tuple[str, int]) -> None:
    fwd = PortForward.parse(spec)
    assert ((fwd.listen_host, fwd.listen_port), (fwd.dest_host, fwd.dest_port)) == (listen, dest)
    assert fwd.spec == spec


@pytest.mark.parametrize(("spec", "message"), [
    ("8080", "expected [BIND:]PORT:HOST:HOSTPORT"),
    ("8080:db", "expected [BIND:]PORT:HOST:HOSTPORT"),
    ("a:b:8080:db:80", "expected [BIND:]PORT:HOST:HOSTPORT"),
    ("8080::80", "expected [BIND:]PORT:HOST:HOSTPORT"),
    ("8080:[::1:80", "expected [BIND:]PORT:HOST:HOSTPORT"),
    ("8080:[::1]x:80", "expected [BIND:]PORT:HOST:HOSTPORT"),
    ("http:db:80", "'http' is not a port from 1 to 65535"),
    ("0:db:80", "'0' is not a port from 1 to 65535"),
    ("8080:db:99999", "'99999' is not a port from 1 to 65535"),
    ("/tmp/sock:db:80", "'/tmp/sock' is not a port"),
])
def test_bad_specs_say_what_is_wrong(spec: str, message: str) -> None:
    with pytest.raises(BadParameter) as err:
        PortForward.parse(spec)
    assert str(err.value).startswith(f"-L {spec!r}: ") and message in str(err.value)


def test_remote_specs_let_the_node_choose_and_allow_port_0() -> None:
    fwd = PortForward.parse("0:localhost:8000", remote=True)
    assert (fwd.remote, fwd.flag, fwd.listen_host, fwd.listen_port) == (True, "-R", "", 0)
    assert PortForward.parse("[::1]:9000:db:80", remote=True).listen_host == "::1"
    with pytest.raises(BadParameter) as err:
        PortForward.parse("0:db:80")
    assert str(err.value) == "-L '0:db:80': '0' is not a port from 1 to 65535"
    with pytest.raises(BadParameter) as err:
        PortForward.parse("9000:db", remote=True)
    assert str(err.value).startswith("-R '9000:db': expected [BIND:]PORT:HOST:HOSTPORT")
