"""A new user's mistakes and surprises with the daemon, the audit log and the auth, with
real processes: nothing vanishes from the audit log, a failed start leaves nothing
behind, and every failure is one line that says what to do."""

from __future__ import annotations

import uuid

from gatehouse.process.harness import Client, Cluster, wait_for


def test_a_long_command_is_audited_truncated_not_dropped(cluster: Cluster, alice: Client) -> None:
    marker = f"padded-{uuid.uuid4().hex[:8]}"
    padding = "x" * 70000
    res = alice.ssh("root@node1", f"echo {marker}; : {padding}; echo PADDED")
    assert res.out == f"{marker}\nPADDED\n", res

    def found() -> dict[str, dict[str, object]] | None:
        events = cluster.events("--type=session.start,exec,session.end", "--since=10m")
        mine = {e["event"]: e for e in events
                if marker in str(e.get("fields", {}).get("command", ""))}
        return mine if set(mine) == {"session.start", "exec"} else None

    events = wait_for("the padded session's start and exec events", found, timeout=15)
    for name, event in events.items():
        fields = event["fields"]
        assert isinstance(fields, dict)
        command = fields["command"]
        assert isinstance(command, str) and command.startswith(f"echo {marker}; : xxx"), name
        assert len(command) < 9000, (name, len(command))
        assert fields["truncated"] == {"command": len(f"echo {marker}; : {padding}; echo PADDED")}
