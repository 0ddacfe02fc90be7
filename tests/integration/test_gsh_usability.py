"""A new user's habits with gsh, for real: logging in again, leaves that join later,
OpenSSH's option shapes, port forwarding, and one line (exit 255) whenever a session
cannot go on."""

from __future__ import annotations

import datetime as dt
import json
import re
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from gatehouse.process.harness import (
    GSH,
    PASSWORD,
    Client,
    Cluster,
    Process,
    free_ports,
    join,
    run,
    wait_for,
    wait_online,
)
from tests.auth.samples import leaf_host_ca

LEAF = "us-east-1b"
ACCESS_MAP = "{remote: access, local: [access]}"


def _one_line(res_err: str) -> str:
    lines = [line for line in res_err.splitlines() if line.strip()]
    assert len(lines) == 1, res_err
    return lines[0]


def _background(client: Client, name: str, *args: str) -> Process:
    """`gsh ARGS` running as a process of its own (stdout and stderr in one log)."""
    return Process(name, [str(GSH), *args], client.home / f"{name}.log",
                   env=client.env()).start()


def _session_started(client: Client, *args: str) -> Process:
    """A `gsh ssh` session that has printed 'started' and then waits a minute."""
    session = _background(client, "session", "ssh", *args, "echo started; sleep 60")
    session.wait_ready("its 'started'", lambda: "started" in session.output())
    return session


def _ended_with_one_line(session: Process) -> str:
    rc = session.wait(20)
    text = session.output()
    assert rc == 255, text
    lines = [line for line in text.splitlines() if line.strip() and line != "started"]
    assert len(lines) == 1 and lines[0].startswith("error: "), text
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


# --- what the client knows about a refusal (items 11, 12) -------------------------------------


def test_a_login_not_in_the_certificate_says_which_logins_it_has(alice: Client) -> None:
    res = alice.ssh("bob@node1", "true")
    assert res.rc == 255 and res.out == "", res
    line = _one_line(res.err)
    assert "bob is not among the logins of your certificate (root)" in line, line


def test_a_node_is_reached_by_the_address_it_advertises(cluster: Cluster, alice: Client) -> None:
    port = str(cluster.ssh_port)
    assert alice.ssh(f"root@127.0.0.1:{port}", "echo hi").ok().out == "hi\n"
    assert alice.gsh("ssh", "-p", port, "root@127.0.0.1", "echo", "hi").ok().out == "hi\n"
    assert alice.gsh("ssh", "root@127.0.0.1", "-p", port, "echo", "hi").ok().out == "hi\n"


def test_an_address_no_node_advertises_says_nodes_are_named(alice: Client) -> None:
    (unused,) = free_ports(1)
    for args in ([f"root@127.0.0.1:{unused}"], ["-p", str(unused), "root@127.0.0.1"],
                 ["root@node1", "-p", str(unused)]):
        res = alice.gsh("ssh", *args, "true")
        assert res.rc == 255, res
        assert "nodes are addressed by name or host id" in _one_line(res.err), res


# --- OpenSSH's option shapes (items 14, 23) ---------------------------------------------------


def test_a_leading_double_dash_after_the_target_is_dropped(alice: Client) -> None:
    res = alice.ssh("root@node1", "--", "echo", "hi")
    assert (res.rc, res.out) == (0, "hi\n"), res
    res = alice.ssh("root@node1", "--", "echo", "--", "-t")  # only the first one
    assert (res.rc, res.out) == (0, "-- -t\n"), res


def test_options_after_the_target(alice: Client) -> None:
    assert alice.ssh("root@node1", "tty").rc == 1  # no PTY for a command...
    res = alice.ssh("root@node1", "-t", "tty")  # ...unless -t, here after the target
    assert res.rc == 0 and res.out.startswith("/dev/pts/"), res
    res = alice.ssh("root@node1", "--cluster", "nope", "true")
    assert res.rc == 255 and "unknown cluster nope" in _one_line(res.err), res


def test_usage_errors_after_the_target_are_one_line(alice: Client) -> None:
    for args, message in ((["-p"], "option -p needs a value"),
                          (["-p", "x", "true"], "-p wants a port"),
                          (["-L", "8080", "true"], "-L '8080': expected"),
                          (["-N", "true"], "-N runs no command")):
        res = alice.ssh("root@node1", *args)
        assert res.rc == 2 and message in _one_line(res.err), res


# --- port forwarding (item 23) ----------------------------------------------------------------

FORWARDER = """kind: role
version: v1
metadata: {{name: {name}}}
spec:
  options: {{port_forwarding: {allowed}}}
  allow:
    logins: [root]
    node_labels: {{"*": "*"}}
"""


@pytest.fixture
def echo_port() -> Iterator[int]:
    """A TCP service on loopback answering each connection's first chunk with 'echo: ...'."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(4)
    server.settimeout(20)

    def serve() -> None:
        for _ in range(4):
            try:
                conn, _ = server.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(20)
                conn.sendall(b"echo: " + conn.recv(1024))

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    server.close()
    thread.join(5)


def _through(port: int, data: bytes) -> bytes:
    """What comes back for ``data`` through the local forward at ``port`` (b"" when the
    forward closed the connection)."""
    with socket.create_connection(("127.0.0.1", port), timeout=20) as conn:
        conn.sendall(data)
        conn.shutdown(socket.SHUT_WR)
        received = b""
        while chunk := conn.recv(1024):
            received += chunk
        return received


def _listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture
def forwarder(cluster: Cluster, make_client: Callable[[Cluster], Client],
              username: str) -> Client:
    """A user whose role allows port forwarding (the role is named after the user)."""
    cluster.create(FORWARDER.format(name=f"fwd-{username}", allowed="true"), force=True).ok()
    cluster.add_user(username, roles=f"fwd-{username}", logins="root")
    me = make_client(cluster)
    me.login(username).ok()
    return me


def test_local_forwarding_where_the_role_allows_it(cluster: Cluster, forwarder: Client,
                                                   echo_port: int) -> None:
    (local,) = free_ports(1)
    tunnel = _background(forwarder, "forward", "ssh", "-N", "-L",
                         f"{local}:127.0.0.1:{echo_port}", "root@node1")
    try:
        tunnel.wait_ready("the -L listener", lambda: _listening(local))
        assert _through(local, b"hello\n") == b"echo: hello\n"
    finally:
        tunnel.stop()
    user = json.loads((forwarder.home / "profile.json").read_text())["user"]
    cluster.wait_event("the forward", lambda e: e["event"] == "port_forward"
                       and e["user"] == user)


def test_forwarding_with_a_command_lasts_as_long_as_the_command(
    forwarder: Client, echo_port: int,
) -> None:
    (local,) = free_ports(1)
    probe = (f"python3 -c \"import socket; s = socket.create_connection(('127.0.0.1', {local}));"
             f" s.sendall(b'x'); print(s.recv(64).decode())\"")
    res = forwarder.gsh("ssh", f"-L127.0.0.1:{local}:127.0.0.1:{echo_port}", "root@node1", probe)
    assert (res.rc, res.out) == (0, "echo: x\n"), res
    assert not _listening(local)


def test_forwarding_is_refused_at_once_without_a_role_for_it(alice: Client) -> None:
    res = alice.gsh("ssh", "-N", "-L", "18080:127.0.0.1:80", "root@node1", timeout=20)
    assert res.rc == 255 and "port forwarding (-L) is not allowed" in _one_line(res.err), res


def test_a_forward_the_node_refuses_says_so(cluster: Cluster, forwarder: Client, username: str,
                                           echo_port: int) -> None:
    """The certificate allows forwarding; the role no longer does (the node decides with
    the roles as they are now)."""
    cluster.create(FORWARDER.format(name=f"fwd-{username}", allowed="false"), force=True).ok()
    (local,) = free_ports(1)
    tunnel = _background(forwarder, "forward", "ssh", "-N", "-L",
                         f"{local}:127.0.0.1:{echo_port}", "root@node1")
    try:
        tunnel.wait_ready("the -L listener", lambda: _listening(local))
        got = wait_for("the node to refuse", lambda: _through(local, b"x") == b"" and "refused"
                       in tunnel.output(), timeout=15)
        assert got
        assert f"the node refused to open 127.0.0.1:{echo_port}" in tunnel.output()
    finally:
        tunnel.stop()


def test_remote_forwarding_where_the_role_allows_it(cluster: Cluster, forwarder: Client,
                                                    username: str, echo_port: int) -> None:
    """-R 0: the node listens on a free loopback port, says which (as ssh(1) does), and
    its connections reach the echo service through gsh."""
    tunnel = _background(forwarder, "rforward", "ssh", "-N", "-R",
                         f"0:127.0.0.1:{echo_port}", "root@node1")
    try:
        said = rf"Allocated port (\d+) for remote forward to 127.0.0.1:{echo_port}"
        tunnel.wait_ready("the allocated port", lambda: re.search(said, tunnel.output()))
        allocated = re.search(said, tunnel.output())
        assert allocated is not None
        port = int(allocated.group(1))
        assert port != echo_port and _through(port, b"hi\n") == b"echo: hi\n"
    finally:
        tunnel.stop()
    cluster.wait_event("the remote forward", lambda e: e["event"] == "port_forward"
                       and e["message"] == "remote" and e["fields"].get("listen")
                       == f"127.0.0.1:{port}")


def test_remote_forwarding_with_a_command_and_openssh(
    cluster: Cluster, forwarder: Client, echo_port: int,
) -> None:
    """A command on the node reaches the forward while it runs; ssh(1) -R through
    `gsh config` gets the same from the node."""
    (remote,) = free_ports(1)
    probe = (f"python3 -c \"import socket; s = socket.create_connection(('127.0.0.1', "
             f"{remote})); s.sendall(b'x'); print(s.recv(64).decode())\"")
    res = forwarder.gsh("ssh", "-R", f"{remote}:127.0.0.1:{echo_port}", "root@node1", probe)
    assert (res.rc, res.out) == (0, "echo: x\n"), res
    assert not _listening(remote)
    config = forwarder.openssh_config()
    res = run(["ssh", "-F", str(config), "-o", "BatchMode=yes", "-o", "ExitOnForwardFailure=yes",
               "-R", f"{remote}:127.0.0.1:{echo_port}", f"root@node1.{cluster.name}", probe],
              env=forwarder.env(), timeout=30)
    assert (res.rc, res.out) == (0, "echo: x\n"), res


def test_remote_forwarding_is_refused_without_a_role_for_it(
    cluster: Cluster, forwarder: Client, username: str, alice: Client,
) -> None:
    res = alice.gsh("ssh", "-N", "-R", "0:127.0.0.1:80", "root@node1", timeout=20)
    assert res.rc == 255 and "port forwarding (-R) is not allowed" in _one_line(res.err), res
    # the certificate allows it, the role no longer does: the node refuses and says why
    cluster.create(FORWARDER.format(name=f"fwd-{username}", allowed="false"), force=True).ok()
    res = forwarder.gsh("ssh", "-N", "-R", "0:127.0.0.1:80", "root@node1", timeout=20)
    assert res.rc == 255 and "-R 0:127.0.0.1:80: the node refused to listen on port 0" \
        in _one_line(res.err), res
    cluster.wait_event("the refusal", lambda e: e["event"] == "port_forward.denied"
                       and e["message"] == "port forwarding is not allowed by the user's roles")


# --- a session that cannot go on: one line, exit 255 (item 2) ---------------------------------


def test_a_command_too_long_for_one_request_is_one_line(alice: Client) -> None:
    chunk = "x" * 100_000  # three arguments: one may not exceed 128 KiB (execve)
    res = alice.ssh("root@node1", "echo", chunk, chunk, chunk)
    assert res.rc == 255 and res.out == "", res
    assert "Max packet size exceeded" in _one_line(res.err), res


def test_a_reader_that_goes_away_is_one_line(alice: Client) -> None:
    """`gsh ssh node yes | head -1`: gsh's stdout breaks, not the connection."""
    gsh = subprocess.Popen([str(GSH), "ssh", "root@node1", "yes"], env=alice.env(),
                           stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE)
    try:
        assert gsh.stdout is not None and gsh.stderr is not None
        assert gsh.stdout.readline() == b"y\n"
        gsh.stdout.close()
        assert gsh.wait(20) == 255
        line = _one_line(gsh.stderr.read().decode())
        assert line == "error: cannot write the session's output to stdout: Broken pipe", line
    finally:
        gsh.kill()
        gsh.wait(10)


def test_stopping_the_daemon_mid_session_is_one_line(fresh_cluster: Cluster,
                                                     make_client: Callable[[Cluster], Client]
                                                     ) -> None:
    fresh_cluster.add_user("carol")
    carol = make_client(fresh_cluster)
    carol.login("carol").ok()
    session = _session_started(carol, "root@node1")
    fresh_cluster.stop()
    assert "connection to node1 was lost" in _ended_with_one_line(session)


# --- a leaf that joins after the user logged in (items 4 and 2) -------------------------------


class LateLeaf:
    def __init__(self, root: Cluster, leaf: Cluster, trust: str, home: Path) -> None:
        self.root = root
        self.leaf = leaf
        self.trust = trust  # the trusted_cluster resource the leaf joined with
        self.home = home  # logged in to the root before the leaf joined: copy it


@pytest.fixture(scope="module")
def late_leaf(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LateLeaf]:
    with Cluster(tmp_path_factory.mktemp("leaf"), name=LEAF).running(wait=False) as leaf:
        cluster.add_user("dave")
        dave = Client(tmp_path_factory.mktemp("dave-home"), cluster.proxy)
        dave.login("dave").ok()
        assert dave.gsh("clusters", "--format=json").ok().json()[-1]["name"] != LEAF
        trust = join(leaf, cluster, ACCESS_MAP)
        yield LateLeaf(cluster, leaf, trust, dave.home)


@pytest.fixture
def dave(late_leaf: LateLeaf, tmp_path: Path) -> Client:
    """A copy of the profile from before the leaf joined."""
    shutil.copytree(late_leaf.home, tmp_path / "dave")
    return Client(tmp_path / "dave", late_leaf.root.proxy)


def test_an_unknown_cluster_name_refreshes_the_list_once(dave: Client) -> None:
    res = dave.gsh("ssh", f"--cluster={LEAF}", "root@node1", "echo", "hi")
    assert (res.rc, res.out) == (0, "hi\n"), res
    res = dave.gsh("ssh", "--cluster=us-east-1z", "root@node1", "true")
    assert res.rc == 255 and "unknown cluster us-east-1z" in _one_line(res.err), res


def test_ls_all_asks_the_root_for_the_current_list(dave: Client) -> None:
    nodes = dave.gsh("ls", "--all", "--format=json").ok().json()
    assert {n["spec"]["cluster"] for n in nodes} == {"test.example.com", LEAF}, nodes


def test_disabling_the_trust_mid_session_is_one_line(late_leaf: LateLeaf, dave: Client) -> None:
    session = _session_started(dave, f"--cluster={LEAF}", "root@node1")
    disabled = late_leaf.trust.replace("enabled: true", "enabled: false")
    assert disabled != late_leaf.trust
    try:
        late_leaf.leaf.create(disabled, force=True).ok()
        assert "connection to node1 was lost" in _ended_with_one_line(session)
    finally:
        session.stop()
        late_leaf.leaf.create(late_leaf.trust, force=True).ok()
        wait_online(late_leaf.root, LEAF)
