"""A new user's habits with gsh, for real: logging in again, and an expired
certificate."""

from __future__ import annotations

import datetime as dt
import shutil
import time
from pathlib import Path

import pytest

from gatehouse.process.harness import (
    PASSWORD,
    Client,
    Cluster,
)
from tests.auth.samples import leaf_host_ca

LEAF = "us-east-1b"
ACCESS_MAP = "{remote: access, local: [access]}"


def _one_line(res_err: str) -> str:
    lines = [line for line in res_err.splitlines() if line.strip()]
    assert len(lines) == 1, res_err
    return lines[0]


# --- logging in again (item 3) ----------------------------------------------------------------


def _tls_fingerprint(cluster: Cluster) -> str:
    """The host CA's tls fingerprint as `gatectl status` prints it."""
    for line in cluster.gatectl("status").out.splitlines():
        if line.startswith("Host CA:"):
            return line.split()[-2]
    raise AssertionError("no Host CA line in gatectl status")


def test_insecure_login_prints_the_fingerprint_it_trusted(cluster: Cluster, client: Client,
                                                          username: str) -> None:
    cluster.add_user(username)
    res = client.login(username).ok()
    assert res.out.startswith(f"logged in as {username} "), res
    line = _one_line(res.err)
    assert f"trusted the proxy's CA {_tls_fingerprint(cluster)} on first use" in line, line


def test_login_again_reuses_the_proxy_user_and_pinned_ca(cluster: Cluster, client: Client,
                                                          username: str) -> None:
    cluster.add_user(username)
    client.login(username).ok()
    for args in ([], [f"--user={username}"], [f"--proxy={cluster.proxy}", f"--user={username}"]):
        res = client.gsh("login", *args, "--password-stdin", input=PASSWORD + "\n")
        assert res.rc == 0 and res.out.startswith(f"logged in as {username} "), res
        assert res.err == "", res  # verified with the pinned CA: nothing trusted blindly
    assert client.ssh("root@node1", "echo hi").ok().out == "hi\n"


def test_login_again_verifies_the_proxy_with_the_pinned_ca(cluster: Cluster, client: Client,
                                                            username: str) -> None:
    """Another CA pinned (as if the proxy were an impostor): the login fails, and the
    profile is left as it was."""
    cluster.add_user(username)
    client.login(username).ok()
    (client.home / "keys" / "cas.pem").write_text(leaf_host_ca("impostor").tls)
    before = (client.home / "profile.json").read_text()
    res = client.gsh("login", "--password-stdin", input=PASSWORD + "\n")
    assert res.rc == 1 and "TLS verification" in _one_line(res.err), res
    assert (client.home / "profile.json").read_text() == before


def test_login_with_the_right_ca_file(cluster: Cluster, alice: Client, client: Client,
                                      username: str) -> None:
    cluster.add_user(username)
    ca_file = alice.home / "keys" / "cas.pem"
    res = client.gsh("login", f"--proxy={cluster.proxy}", f"--user={username}",
                     f"--ca-file={ca_file}", "--password-stdin", input=PASSWORD + "\n")
    assert res.rc == 0 and res.err == "", res


@pytest.mark.parametrize("ca_file", ["/etc/passwd", "/nonexistent/ca.pem"])
def test_a_ca_file_that_is_no_certificate_is_one_line_and_creates_nothing(
    cluster: Cluster, tmp_path: Path, ca_file: str,
) -> None:
    client = Client(tmp_path / "home", cluster.proxy)  # not even the directory exists
    res = client.gsh("login", f"--proxy={cluster.proxy}", "--user=alice", f"--ca-file={ca_file}",
                     "--password-stdin", input=PASSWORD + "\n")
    assert res.rc == 1 and _one_line(res.err).startswith("error: --ca-file: "), res
    assert ca_file in res.err and "SSL" not in res.err, res
    assert not client.home.exists()


def test_the_first_login_still_needs_the_proxy_and_a_way_to_trust_it(
    cluster: Cluster, client: Client,
) -> None:
    res = client.gsh("login", "--user=alice", "--password-stdin", input=PASSWORD + "\n")
    assert res.rc == 1 and "--proxy=HOST:PORT" in _one_line(res.err), res
    res = client.gsh("login", f"--proxy={cluster.proxy}", "--user=alice", "--password-stdin",
                     input=PASSWORD + "\n")
    assert res.rc == 1 and "--ca-file=FILE" in _one_line(res.err), res
    assert not (client.home / "profile.json").exists()


# --- an expired certificate (items 3 and 15) --------------------------------------------------

TTL = 4  # seconds


@pytest.fixture(scope="module")
def expired_home(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A profile whose certificate was valid for TTL seconds and has expired (tests
    copy it)."""
    cluster.add_user("brief")
    me = Client(tmp_path_factory.mktemp("expired-home"), cluster.proxy)
    me.login("brief", PASSWORD, f"--ttl={TTL}s").ok()
    expires = dt.datetime.fromisoformat(me.gsh("status", "--format=json").ok().json()["expires"])
    assert me.gsh("status", "--format=json").ok().json()["expired"] is False
    time.sleep(max(0.0, (expires - dt.datetime.now(dt.UTC)).total_seconds()) + 1.0)
    return me.home


@pytest.fixture
def expired(cluster: Cluster, expired_home: Path, tmp_path: Path) -> Client:
    shutil.copytree(expired_home, tmp_path / "expired")
    return Client(tmp_path / "expired", cluster.proxy)


def test_status_says_expired(expired: Client) -> None:
    assert expired.gsh("status", "--format=json").ok().json()["expired"] is True
    text = expired.gsh("status").ok().out
    expires = next(line for line in text.splitlines() if line.startswith("expires:"))
    assert "EXPIRED" in expires, text


def test_the_advice_after_expiry_works_as_written(expired: Client) -> None:
    res = expired.ssh("root@node1", "true")
    assert res.rc == 255 and "run `gsh login` again" in _one_line(res.err), res
    again = expired.gsh("login", "--password-stdin", input=PASSWORD + "\n")
    assert again.rc == 0 and again.out.startswith("logged in as brief "), again
    assert expired.gsh("status", "--format=json").ok().json()["expired"] is False
    assert expired.ssh("root@node1", "echo hi").ok().out == "hi\n"
