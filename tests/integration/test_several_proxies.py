"""Several proxies in one cluster (ARCHITECTURE §4): a tunnel node and a leaf each hold
a tunnel to every proxy, so a user who lands on any proxy reaches them (Teleport issue
#1354 is a leaf looking offline on a proxy that holds no tunnel of it); one proxy
killed leaves the other serving, and the agents redial it when it returns.

The root runs its auth alone and two proxy processes; the agents are configured with
the first proxy's address only and learn the second from it, or with the address of a
TCP load balancer (HAProxy) in front of both that sends every connection to the first."""

from __future__ import annotations

import contextlib
import os
import re
import select
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import pytest

from gatehouse.process.harness import (
    GSH,
    Client,
    Cluster,
    Process,
    in_parallel,
    join,
    stop_all,
    wait_for,
)
from tests.integration.haproxy import start_haproxy

ROOT, LEAF = "sso.example.com", "us-east-1a"


@dataclass
class Setup:
    root: Cluster
    leaf: Cluster
    edge: Process
    users: dict[str, Client]  # by the proxy they logged in through: "proxy", "proxy2"

    def proxy_ids(self) -> dict[str, str]:
        """Each proxy's host id (the name its certificate carries), by hostname."""
        listed = self.root.gatectl("get", "proxies", "--format=json").ok().json()
        return {p["spec"]["hostname"]: p["metadata"]["name"] for p in listed}


@contextlib.contextmanager
def several_proxies(work: Path, *, balancer: str = "") -> Iterator[Setup]:
    """A root with two proxies, a leaf and a tunnel node whose agents dial the first
    proxy, or the TCP load balancer ``balancer`` configures (HAProxy settings for its
    backend, started on a free port in front of both); alice logged in through each."""
    root = Cluster(work / "root", name=ROOT, ssh=False, proxy_apart=True)
    leaf = Cluster(work / "leaf", name=LEAF)
    extra: list[Process] = []
    try:
        in_parallel(root.start, leaf.start)
        root.start_proxy("proxy2")
        dial = root.proxy
        if balancer:
            dial, process = start_haproxy(work, partial(
                _haproxy_config, balance=balancer,
                servers=[root.proxy, root.proxy_addrs["proxy2"]]))
            extra.append(process)
        join(leaf, root, "{remote: access, local: [access]}", proxy_addr=dial)
        edge = root.start_node("edge1", root.token("node"), {"site": "berlin"}, tunnel=True,
                               proxy=dial)
        edge.wait_up()
        root.add_user("alice", roles="access", logins="root")
        users = {}
        for name, addr in (("proxy", root.proxy), ("proxy2", root.proxy_addrs["proxy2"])):
            home = work / f"alice-{name}"
            home.mkdir()
            users[name] = Client(home, addr)
            users[name].login("alice").ok()
        yield Setup(root, leaf, edge, users)
    finally:
        stop_all([*extra, *root.nodes.values(), *root.more_proxies.values(),
                  *(p for p in (root.proxy_process, root.daemon, leaf.daemon) if p)])


def _haproxy_config(port: int, balance: str, servers: list[str]) -> str:
    """HAProxy in plain TCP mode on ``port``, in front of ``servers``."""
    return "\n".join([
        "global", "    maxconn 512",
        "defaults", "    mode tcp", "    timeout connect 5s", "    timeout client 1h",
        "    timeout server 1h",
        "frontend gatehouse", f"    bind 127.0.0.1:{port}", "    default_backend proxies",
        "backend proxies", f"    balance {balance}",
        *(f"    server p{i} {addr}" for i, addr in enumerate(servers, 1)), ""])


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    with several_proxies(tmp_path_factory.mktemp("proxies")) as s:
        yield s


def _held(log: str, what: str) -> set[str]:
    """The proxies an agent's log says its tunnels to ``what`` came up with."""
    return set(re.findall(rf"tunnel to {re.escape(what)} is up \(proxy ([\w-]+)\)", log))


def wait_held_by_both(setup: Setup) -> None:
    """Until the agents' logs say they hold a tunnel to each proxy, and each proxy took
    them (a node's tunnel serves once the proxy's auth admitted it, within a second)."""
    ids = set(setup.proxy_ids().values())
    assert len(ids) == 2
    wait_for("the node's tunnels to both proxies", lambda: _held(
        setup.edge.log_text(), f"the proxy of {ROOT}") >= ids, timeout=30)
    assert setup.leaf.daemon is not None
    wait_for("the leaf's tunnels to both proxies", lambda: _held(
        setup.leaf.daemon.log_text(), f"root {ROOT}") >= ids, timeout=30)
    for proxy in setup.users:
        wait_reached(setup, proxy)


def wait_reached(setup: Setup, proxy: str) -> None:
    alice = setup.users[proxy]
    wait_for(f"the node through {proxy}", lambda: alice.ssh(
        "root@edge1", "echo edge").out == "edge\n", timeout=10)
    wait_for(f"the leaf through {proxy}", lambda: alice.gsh(
        "ssh", f"--cluster={LEAF}", "root@node1", "echo leaf").out == "leaf\n", timeout=10)


def test_gatectl_lists_both_proxies_online(setup: Setup) -> None:
    listed = setup.root.gatectl("get", "proxies", "--format=json").ok().json()
    assert sorted(p["spec"]["hostname"] for p in listed) == ["proxy", "proxy2"]
    assert all(p["kind"] == "proxy" and p["status"]["connection"] == "online"
               and p["status"]["last_heartbeat"] for p in listed)
    assert {p["spec"]["public_addr"] for p in listed} == {
        setup.root.proxy, setup.root.proxy_addrs["proxy2"]}
    table = setup.root.gatectl("get", "proxies").ok().out
    assert "hostname: proxy2" in table and "connection: online" in table, table
    one = setup.root.gatectl("get", "proxy/proxy2", "--format=yaml").ok().out
    assert "kind: proxy" in one and setup.root.proxy_addrs["proxy2"] in one, one


def test_the_node_and_the_leaf_hold_a_tunnel_to_each_proxy(setup: Setup) -> None:
    wait_held_by_both(setup)
    node = setup.root.node_named("edge1")
    assert node is not None and node["status"]["connection"] == "online"
    rc = setup.root.gatectl("get", f"rc/{LEAF}", "--format=json").ok().json()
    assert rc[0]["status"]["connection"] == "online"


@pytest.mark.parametrize("proxy", ["proxy", "proxy2"])
def test_a_user_through_either_proxy_reaches_the_node_and_the_leaf(
        setup: Setup, proxy: str) -> None:
    wait_held_by_both(setup)
    alice = setup.users[proxy]
    assert alice.ssh("root@edge1", f"echo edge via {proxy}").ok().out == f"edge via {proxy}\n"
    assert alice.gsh("ssh", f"--cluster={LEAF}", "root@node1", f"echo leaf via {proxy}"
                     ).ok().out == f"leaf via {proxy}\n"
    [row] = [c for c in alice.gsh("clusters", "--format=json").ok().json()
             if c["name"] == LEAF]
    assert row["status"] == "online"


class Live:
    """A session left running through one proxy: prints ``marker``, then echoes a line."""

    def __init__(self, client: Client, marker: str, *target: str) -> None:
        self.proc = subprocess.Popen(
            [str(GSH), "ssh", *target, f"echo {marker}; read line; echo $line"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            env=client.env())
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], 30)
        assert ready, f"the session {marker} printed nothing in 30 s"
        assert self.proc.stdout.readline() == f"{marker}\n".encode()

    def finish(self, line: str) -> tuple[int, str, str]:
        out, err = self.proc.communicate(f"{line}\n".encode(), timeout=30)
        return self.proc.returncode, out.decode(), err.decode()


def test_a_proxy_killed_leaves_the_other_serving_and_is_redialed_when_back(
        setup: Setup) -> None:
    wait_held_by_both(setup)
    first = setup.root.proxy_process
    assert first is not None
    first_id = setup.proxy_ids()["proxy"]
    via_second = setup.users["proxy2"]
    sessions = [Live(via_second, "edge-live", "root@edge1"),
                Live(via_second, "leaf-live", f"--cluster={LEAF}", "root@node1")]
    # The proxy every agent was configured with dies, without a goodbye.
    os.killpg(first.pid, signal.SIGKILL)
    assert first.wait(10) == -signal.SIGKILL
    for live in sessions:
        assert live.finish("still here") == (0, "still here\n", "")
    assert via_second.ssh("root@edge1", "echo new session").ok().out == "new session\n"
    assert via_second.gsh("ssh", f"--cluster={LEAF}", "root@node1", "echo new leaf session"
                          ).ok().out == "new leaf session\n"
    # Both ends count the tunnel on the proxy left: the node and the leaf stay online.
    assert setup.root.node_named("edge1")["status"]["connection"] == "online"  # type: ignore[index]
    rc = setup.root.gatectl("get", f"rc/{LEAF}", "--format=json").ok().json()
    assert rc[0]["status"]["connection"] == "online"
    [trust] = setup.leaf.gatectl("get", "trusted_cluster", "--format=json").ok().json()
    assert trust["status"]["connection"] == "online", trust["status"]

    edge_before = setup.edge.log_text().count(f"is up (proxy {first_id})")
    assert setup.leaf.daemon is not None
    leaf_before = setup.leaf.daemon.log_text().count(f"is up (proxy {first_id})")
    setup.root.start_proxy()  # back, with the identity it joined with
    wait_for("the node's tunnel to the returned proxy", lambda: setup.edge.log_text().count(
        f"is up (proxy {first_id})") > edge_before, timeout=40)
    wait_for("the leaf's tunnel to the returned proxy", lambda: setup.leaf.daemon.log_text(  # type: ignore[union-attr]
    ).count(f"is up (proxy {first_id})") > leaf_before, timeout=40)
    wait_reached(setup, "proxy")


def test_behind_a_balancer_that_picks_one_proxy_the_agents_still_reach_both(
        tmp_path: Path) -> None:
    # "balance first" sends every connection to the first proxy: the agents' second
    # tunnels reach a proxy they hold, close it, and then dial the other one directly.
    with several_proxies(tmp_path, balancer="first") as s:
        wait_held_by_both(s)  # and users through either proxy reach the node and the leaf
        assert "again: closing the extra one" in s.edge.log_text()


@pytest.mark.timeout(300)  # a cluster of its own, with a balancer
def test_behind_a_roundrobin_balancer_the_agents_hold_one_tunnel_to_each_proxy(
        tmp_path: Path) -> None:
    # "balance roundrobin" alternates the proxies across every client's connections: a
    # dial may land on a proxy held already (closed at once), the next on the other.
    with several_proxies(tmp_path, balancer="roundrobin") as s:
        wait_held_by_both(s)  # and users through either proxy reach the node and the leaf
        ids = set(s.proxy_ids().values())
        assert s.leaf.daemon is not None
        for log, what in ((s.edge.log_text, f"the proxy of {ROOT}"),
                          (s.leaf.daemon.log_text, f"root {ROOT}")):
            text = log()
            # Held now: the tunnels that came up less those that closed (a leaf's first
            # one may close as the join settles, and be dialed again).
            held = {p: text.count(f"tunnel to {what} is up (proxy {p})")
                    - len(re.findall(rf"tunnel to {re.escape(what)} closed: .*\(proxy {p}\)",
                                     text)) for p in ids}
            assert held == {p: 1 for p in ids}, text
            # Bounded dials: each loop stops once it holds a tunnel; a few redundant ones
            # at most (the balancer alternates over the leaf's and the node's dials).
            dials = text.count(f"tunnel to {what} at ")
            assert dials <= 3 * len(ids) + 2, text
            wait_reached(s, "proxy2")  # a while later (a session each way) ...
            assert log().count(f"tunnel to {what} at ") == dials  # ... no dial since


@pytest.mark.timeout(300)  # a cluster of its own; a proxy waited offline (15 s), then back
def test_a_proxy_gone_is_removed_with_gatectl_rm_and_is_not_dialed_again(
        tmp_path: Path) -> None:
    with several_proxies(tmp_path) as s:
        wait_held_by_both(s)
        second_id = s.proxy_ids()["proxy2"]
        online = s.root.gatectl("rm", "proxy/proxy2")
        assert online.rc != 0 and len(online.err_lines) == 1 \
            and "proxy proxy2 is online" in online.err, online
        second = s.root.more_proxies["proxy2"]
        os.killpg(second.pid, signal.SIGKILL)
        assert second.wait(10) == -signal.SIGKILL
        wait_for("proxy2 listed offline", lambda: s.root.gatectl(
            "get", "proxy/proxy2", "--format=json").ok().json()[0]["status"]["connection"]
            == "offline", timeout=40)
        unknown = s.root.gatectl("rm", "proxy/nosuch")
        assert unknown.rc != 0 and len(unknown.err_lines) == 1 \
            and "proxy nosuch not found" in unknown.err, unknown
        assert s.root.gatectl("rm", "proxy/proxy2").ok().out.strip() == "proxy proxy2 deleted"
        listed = s.root.gatectl("get", "proxies", "--format=json").ok().json()
        assert [p["spec"]["hostname"] for p in listed] == ["proxy"]
        events = s.root.gatectl("events", "--type=resource.delete", "--format=json").ok().json()
        assert {"kind": "proxy", "name": second_id} in [e.get("fields") for e in events], events
        # Started again with the identity it joined with: its registration is revoked,
        # so the auth refuses it everything (audited); it never serves, no proxy
        # announces it, and the agents never hold a tunnel to it again.
        before = s.edge.log_text().count(f"(proxy {second_id})")
        second.start()
        rc = second.wait(60)
        assert rc is not None and rc != 0, second.log_text()
        assert "could not fetch its trust" in second.log_text(), second.log_text()
        wait_reached(s, "proxy")
        assert s.edge.log_text().count(f"(proxy {second_id})") == before
        denied = s.root.gatectl("events", "--type=access.denied", "--format=json").ok().json()
        assert any(second_id in str(e) for e in denied), denied
