"""`gsh play` in a real terminal: the recording's timing, pause and resume, quit."""

from __future__ import annotations

import os
import re
import select
import subprocess
import time
from collections.abc import Iterator

import pytest

from gatehouse.process.harness import GSH, Client, Cluster, wait_for

from .test_pty import Terminal, _set_size, _take_terminal


@pytest.fixture(scope="module")
def auditor(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Client:
    cluster.add_user("audra", roles="access,auditor", logins="root")
    me = Client(tmp_path_factory.mktemp("audra"), cluster.proxy)
    me.login("audra").ok()
    return me


@pytest.fixture(scope="module")
def session_id(auditor: Client) -> str:
    """A recorded session that prints ONE, waits 1.5 s, then prints TWO."""
    auditor.ssh("root@node1", "echo ONE; sleep 1.5; echo TWO").ok()

    def newest() -> str | None:
        found = auditor.gsh("recordings", "ls", "--format=json").ok().json()
        return str(found[-1]["session_id"]) if found else None

    return wait_for("the recording", newest, timeout=20)


@pytest.fixture
def player(auditor: Client, session_id: str) -> Iterator[Terminal]:
    master, slave = os.openpty()
    _set_size(slave, 24, 80)
    proc = subprocess.Popen([str(GSH), "play", session_id], stdin=slave, stdout=slave,
                            stderr=slave, env=auditor.env(TERM="xterm"),
                            start_new_session=True, preexec_fn=_take_terminal)
    os.close(slave)
    term = Terminal(master, proc)
    yield term
    if proc.poll() is None:
        proc.kill()
    proc.wait(15)
    os.close(master)


def _quiet_for(term: Terminal, seconds: float, pattern: str) -> bool:
    """True if ``pattern`` did not show up on the terminal for ``seconds``."""
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        ready, _, _ = select.select([term.master], [], [], left)
        if ready:
            term.output += os.read(term.master, 65536)
            if re.search(pattern.encode(), term.output):
                return False
    return True


def test_space_pauses_and_resumes_playback(player: Terminal) -> None:
    player.read_until("ONE")
    player.send(" ")  # pause: TWO (due 1.5 s after ONE) must wait
    assert _quiet_for(player, 3.0, "TWO")
    player.send(" ")
    player.read_until("TWO")
    assert player.proc.wait(15) == 0


def test_q_quits_before_the_end(player: Terminal) -> None:
    player.read_until("ONE")
    player.send("q")
    assert player.proc.wait(15) == 0
    assert b"TWO" not in player.drain()


def test_without_a_terminal_the_bytes_come_at_once(auditor: Client, session_id: str) -> None:
    res = auditor.gsh("play", session_id)
    assert res.out == "ONE\nTWO\n"
