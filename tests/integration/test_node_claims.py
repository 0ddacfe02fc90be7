"""A node token does not turn the proxy into a relay, nor a node into another one.

- A joining node advertises where the proxy reaches it; the auth accepts only the
  address the node called from (loopback here), so a node cannot point the proxy
  at another listener (127.0.0.2 stands for any address it does not own).
- A node name belongs to one node: a second node (another host id) may not take it
  until the admin removes the first; the same node restarting keeps it.
- gsh pins the host id the proxy resolved: a host certificate for the same name but
  another host (a removed node's, still valid) does not pass for the resolved node.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from collections.abc import Iterator
from typing import Any

import asyncssh
import yaml

from gatehouse.pki.keystore import StoredIdentity
from gatehouse.process.harness import GATEHOUSE, Client, Cluster, Process, wait_for, write_yaml

JOIN_TIMEOUT = 30.0


def _node(cluster: Cluster, config_name: str, nodename: str, token: str,
          **ssh_service: Any) -> Process:
    """Start (not waiting) a node process joining through the proxy, with a config and
    data directory of its own (``config_name``): two may share a node name."""
    data = yaml.safe_load(cluster.node_config(nodename, token, {"env": "claims"}).read_text())
    data["gatehouse"]["data_dir"] = str(cluster.workdir / f"{config_name}-data")
    data["ssh_service"].update(ssh_service)
    config = write_yaml(cluster.workdir / f"{config_name}.yaml", data)
    return Process(f"{cluster.name} {config_name}", [str(GATEHOUSE), "start", "-c", str(config)],
                   cluster.workdir / f"{config_name}.log", cwd=cluster.workdir).start()


def _exit_of(node: Process) -> tuple[int, str]:
    rc = node.wait(JOIN_TIMEOUT)
    if rc is None:
        node.stop()
    assert rc is not None, f"{node.name} still running after {JOIN_TIMEOUT} s: {node.output()}"
    return rc, node.output()


@contextlib.contextmanager
def _listener(host: str) -> Iterator[tuple[int, list[str]]]:
    """A TCP listener on ``host`` the test owns: (port, peers it accepted)."""
    sock = socket.socket()
    sock.bind((host, 0))
    sock.listen()
    sock.settimeout(0.2)
    accepted: list[str] = []
    done = threading.Event()

    def serve() -> None:
        while not done.is_set():
            try:
                conn, peer = sock.accept()
            except TimeoutError:
                continue
            accepted.append(f"{peer[0]}:{peer[1]}")
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield sock.getsockname()[1], accepted
    finally:
        done.set()
        thread.join(5)
        sock.close()


def test_a_node_may_not_point_the_proxy_at_an_address_it_does_not_own(
        cluster: Cluster, alice: Client) -> None:
    with _listener("127.0.0.2") as (port, accepted):
        node = _node(cluster, "relay", "relay", cluster.token("node"),
                     public_addr=f"127.0.0.2:{port}")
        wait_for("the node to register or exit",
                 lambda: not node.alive() or cluster.node_named("relay"), timeout=JOIN_TIMEOUT)
        res = alice.ssh("root@relay", "true")
        assert accepted == [], f"the proxy dialed 127.0.0.2:{port} for a user: {res}"
        assert res.rc == 255 and "not registered" in res.err, res
    rc, log = _exit_of(node)
    assert rc != 0
    assert log.strip().splitlines() == [
        f"error: node relay may not advertise 127.0.0.2:{port}: it called from 127.0.0.1 "
        f"(set ssh_service.public_addr to 127.0.0.1:{port}, or an admin adds its network "
        "to auth_service.node_address_networks)"], log
    failures = wait_for("a join.failure event", lambda: [
        e for e in cluster.events("--type=join.failure") if e["node"] == "relay"])
    assert "may not advertise 127.0.0.2" in failures[0]["message"]


def test_a_second_node_may_not_take_a_nodes_name(cluster: Cluster) -> None:
    first = _node(cluster, "twin-a", "twin", cluster.token("node"))
    first.wait_up()
    host_id = cluster.node_named("twin")["spec"]["host_id"]  # type: ignore[index]
    token = cluster.token("node")
    second = _node(cluster, "twin-b", "twin", token)
    rc, log = _exit_of(second)
    assert rc != 0
    assert log.strip().splitlines() == [
        f"error: node name twin is taken by host {host_id}; if that node is gone (its "
        f"data_dir wiped), remove it with `gatectl rm node/{host_id}`, then join again"], log
    assert [n["spec"]["host_id"] for n in cluster.node_list()
            if n["spec"]["hostname"] == "twin"] == [host_id]

    # The node that holds the name restarts with its data_dir: still itself.
    first.stop()
    first.start().wait_up()
    assert cluster.node_named("twin")["spec"]["host_id"] == host_id  # type: ignore[index]

    # Once the admin removes the old node, the new one joins (its token was kept).
    first.stop()
    cluster.gatectl("rm", f"node/{host_id}").ok()
    second.start().wait_up()
    assert cluster.node_named("twin")["spec"]["host_id"] != host_id  # type: ignore[index]
    second.stop()


@contextlib.contextmanager
def _impostor(addr: str, identity: StoredIdentity) -> Iterator[None]:
    """An SSH server at ``addr`` holding a node's key and host certificate; it lets
    anyone in and answers every command with 'impostor'."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    host, _, port = addr.rpartition(":")

    class LetAnyoneIn(asyncssh.SSHServer):
        def begin_auth(self, username: str) -> bool:
            return False

    async def answer(process: asyncssh.SSHServerProcess[str]) -> None:
        process.stdout.write("impostor\n")
        process.exit(0)

    async def listen() -> asyncssh.SSHAcceptor:
        key = asyncssh.import_private_key(identity.key_file.read_bytes())
        cert = asyncssh.import_certificate(identity.ssh_cert_line())
        return await asyncssh.listen(host, int(port), server_host_keys=[(key, cert)],
                                     server_factory=LetAnyoneIn, process_factory=answer)

    server = asyncio.run_coroutine_threadsafe(listen(), loop).result(10)
    try:
        yield
    finally:
        server.close()
        asyncio.run_coroutine_threadsafe(server.wait_closed(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


def test_gsh_pins_the_host_id_it_resolved(cluster: Cluster, alice: Client) -> None:
    old = _node(cluster, "web-old", "web", cluster.token("node"))
    old.wait_up()
    old_id = cluster.node_named("web")["spec"]["host_id"]  # type: ignore[index]
    old.stop()
    cluster.gatectl("rm", f"node/{old_id}").ok()
    new = _node(cluster, "web-new", "web", cluster.token("node"))
    new.wait_up()
    listed = cluster.node_named("web")
    assert listed is not None and listed["spec"]["host_id"] != old_id
    assert alice.ssh("root@web", "echo", "real").ok().out == "real\n"
    # The new node stops; its listing lasts a while. The removed node's key and host
    # certificate (which names "web" too, and has not expired) now answer at its address.
    new.stop()
    with _impostor(listed["spec"]["addr"], StoredIdentity(cluster.workdir / "web-old-data"
                                                          / "node")):
        res = alice.ssh("root@web", "echo", "real")
    assert res.out == "" and res.rc == 255, res
    assert f"could not prove it is host {listed['spec']['host_id']}" in res.err, res

