"""Rows 1-3 (and the tunnel-mode node's): connect + run `true` + exit, as a user types
it, timed from the outside.

Each repeat runs every command once, in turn (Gatehouse and OpenSSH
interleaved, so that drift in the machine's load hits both alike). Caches are
warm already: set-up ran each path once to check it works. The wall time
includes process start-up: that is what a user waits for.
"""

from __future__ import annotations

from collections.abc import Callable

from bench.clusters import LEAF, NODE, TUNNEL_NODE, Gatehouse
from bench.figures import Figure, ratio_figure
from bench.sshd import CIPHER, OpenSSH
from gatehouse.process.harness import HarnessError, Result, run


def _time(name: str, command: Callable[[], Result]) -> float:
    res = command()
    if res.rc != 0:
        last = (res.err.strip().splitlines() or ["(no stderr)"])[-1]
        raise HarnessError(f"{name} exited {res.rc}: {last}")
    return res.seconds * 1000


def measure(gh: Gatehouse, sshd: OpenSSH, repeats: int) -> list[Figure]:
    openssh_via_config = ["ssh", "-F", str(gh.ssh_config), "-o", "BatchMode=yes",
                          "-o", "GlobalKnownHostsFile=/dev/null", "-o", f"Ciphers={CIPHER}",
                          f"root@{NODE}.{LEAF}", "true"]
    commands: dict[str, Callable[[], Result]] = {
        "gsh direct": lambda: gh.client.gsh("ssh", f"root@{NODE}", "true"),
        "gsh tunnel node": lambda: gh.client.gsh("ssh", f"root@{TUNNEL_NODE}", "true"),
        "gsh leaf": lambda: gh.client.gsh("ssh", f"--cluster={LEAF}", f"root@{NODE}", "true"),
        "ssh -F leaf": lambda: run(openssh_via_config, env=gh.client.env()),
        "ssh": lambda: run(sshd.ssh("true")),
        "ssh -J": lambda: run(sshd.ssh("true", jump=True)),
    }
    times: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(repeats):
        for name, command in commands.items():
            times[name].append(_time(name, command))
    return [
        ratio_figure("connect_direct", "`gsh ssh node true`, direct node via proxy",
                     times["gsh direct"], times["ssh"], "ms", limit=1.0, better="lower"),
        ratio_figure("connect_leaf", "`gsh ssh` to a leaf node (tunnel) vs `ssh -J`",
                     times["gsh leaf"], times["ssh -J"], "ms", limit=1.0, better="lower"),
        ratio_figure("connect_tunnel_node", "`gsh ssh` to a tunnel-mode node vs a direct node",
                     times["gsh tunnel node"], times["gsh direct"], "ms", limit=1.05,
                     better="lower", peer="a direct node",
                     note="both nodes of the root; the tunnel node dialed the root's proxy"),
        ratio_figure("connect_openssh_config",
                     "`ssh -F <gsh config> root@node.leaf true` vs `ssh -J`",
                     times["ssh -F leaf"], times["ssh -J"], "ms", limit=1.2, better="lower"),
    ]
