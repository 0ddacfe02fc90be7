"""An open SSH connection does not outlive its user's access: removing the user closes
the connection at the node (through the trust the auth pushes), with an audit event;
OpenSSH's multiplexed connection (ControlMaster) cannot open a session after it."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from gatehouse.process.harness import Cluster, wait_for

ROOT = "sso.example.com"
CLOSE_WITHIN = 10.0  # seconds from the removal to the node closing the connection


def test_removing_a_user_closes_their_open_connection(tmp_path: Path) -> None:
    root = Cluster(tmp_path / "root", name=ROOT)
    root.start()
    try:
        alice = root.logged_in("alice", tmp_path / "alice")
        config = alice.openssh_config()
        sock = tmp_path / "alice" / "mux.sock"
        mux = ["-o", f"ControlPath={sock}"]
        target = f"root@node1.{ROOT}"
        master = subprocess.Popen(
            ["ssh", "-F", str(config), "-o", "BatchMode=yes", "-o",
             "GlobalKnownHostsFile=/dev/null", "-o", "ControlMaster=yes", *mux, "-N", target],
            env=alice.env(), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE)
        try:
            wait_for("the master connection is up", sock.exists, 20)
            res = alice.openssh(config, target, "echo", "through-the-master",
                                options=("ControlMaster=no", f"ControlPath={sock}"))
            assert res.ok().out.strip() == "through-the-master"

            removed_at = time.monotonic()
            root.gatectl("rm", "user/alice").ok()
            master.wait(CLOSE_WITHIN)  # the node closed the connection: the master ends
            assert time.monotonic() - removed_at < CLOSE_WITHIN
        finally:
            if master.poll() is None:
                master.kill()
                master.wait()
        after = alice.openssh(config, target, "true",
                              options=("ControlMaster=no", f"ControlPath={sock}"))
        assert after.rc == 255
        rejected = root.wait_event("the node's refusal",
                                   lambda e: e["event"] == "session.rejected")
        assert rejected["user"] == "alice" and "no longer allowed" in rejected["message"]
    finally:
        root.stop()
