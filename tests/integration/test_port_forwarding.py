"""Port forwarding only when a role permits it: OpenSSH's `ssh -W` through the proxy."""

from __future__ import annotations

import socket
import subprocess
import threading
from collections.abc import Callable, Iterator

import pytest

from gatehouse.process.harness import Client, Cluster, run

FORWARDER = """kind: role
version: v1
metadata: {name: forwarder}
spec:
  options: {port_forwarding: true}
  allow:
    logins: [root]
    node_labels: {"*": "*"}
"""


def _serving_once(answer: Callable[[socket.socket], None]) -> Iterator[int]:
    """A TCP service on loopback for one connection, which ``answer`` serves; its port."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(4)
    server.settimeout(20)

    def serve() -> None:
        try:
            conn, _ = server.accept()
        except OSError:
            return
        with conn:
            conn.settimeout(20)
            answer(conn)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    server.close()
    thread.join(5)


@pytest.fixture
def echo_port() -> Iterator[int]:
    """Answers a line with 'echo: LINE'."""
    yield from _serving_once(lambda conn: conn.sendall(b"echo: " + conn.recv(1024)))


@pytest.fixture
def banner_port() -> Iterator[int]:
    """Sends a line as a client connects, then closes."""
    yield from _serving_once(lambda conn: conn.sendall(b"banner\n"))


def _forward(client: Client, cluster: Cluster, port: int) -> tuple[int, str, str]:
    config = client.openssh_config()
    res = run(["ssh", "-F", str(config), "-o", "BatchMode=yes", "-W", f"127.0.0.1:{port}",
               f"root@node1.{cluster.name}"], env=client.env(), input="hello\n", timeout=30)
    return res.rc, res.out, res.err


def test_forwarding_is_refused_by_default(
    cluster: Cluster, make_client: Callable[[Cluster], Client], username: str, echo_port: int,
) -> None:
    cluster.add_user(username, roles="access", logins="root")
    client = make_client(cluster)
    client.login(username).ok()
    rc, out, err = _forward(client, cluster, echo_port)
    # The certificate of a user whose roles do not allow forwarding lacks
    # permit-port-forwarding, and the node refuses the channel.
    assert rc != 0 and "echo" not in out and "prohibited" in err, err


def test_a_role_with_port_forwarding_allows_it(
    cluster: Cluster, make_client: Callable[[Cluster], Client], username: str, echo_port: int,
) -> None:
    cluster.create(FORWARDER, force=True).ok()
    cluster.add_user(username, roles="forwarder", logins="root")
    client = make_client(cluster)
    client.login(username).ok()
    rc, out, err = _forward(client, cluster, echo_port)
    assert (rc, out) == (0, "echo: hello\n"), err
    cluster.wait_event("the forward", lambda e: e["event"] == "port_forward"
                       and e["user"] == username)


def test_a_forward_whose_target_closes_first_ends_when_the_client_ends_too(
    cluster: Cluster, make_client: Callable[[Cluster], Client], username: str, banner_port: int,
) -> None:
    """The target's EOF reaches the node before the client's: the node must still close
    the channel once both have ended (asyncssh alone left it open, and ssh -W hung)."""
    cluster.create(FORWARDER, force=True).ok()
    cluster.add_user(username, roles="forwarder", logins="root")
    client = make_client(cluster)
    client.login(username).ok()
    config = client.openssh_config()
    ssh = subprocess.Popen(
        ["ssh", "-F", str(config), "-o", "BatchMode=yes", "-W", f"127.0.0.1:{banner_port}",
         f"root@node1.{cluster.name}"],
        env=client.env(), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE)
    try:
        assert ssh.stdout is not None and ssh.stdin is not None
        # stdout ends at the target's EOF while ssh's stdin is still open
        assert ssh.stdout.read() == b"banner\n"
        ssh.stdin.close()
        assert ssh.wait(timeout=15) == 0
    finally:
        ssh.kill()
        ssh.wait()
