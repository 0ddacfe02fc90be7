"""A session's process receives the usual signals even when the node ignores them."""

from __future__ import annotations

import os
import pwd
import signal
from collections.abc import Iterator

import pytest

from gatehouse.node.spawn import (
    SESSION_SIGNALS,
    Account,
    lookup_account,
    spawn,
    subsystem_refusal,
    unignore_session_signals,
)


@pytest.fixture
def node_ignores_signals() -> Iterator[None]:
    """As a node started under nohup, or as a shell's background job, would be."""
    saved = {signum: signal.getsignal(signum) for signum in SESSION_SIGNALS}
    for signum in SESSION_SIGNALS:
        signal.signal(signum, signal.SIG_IGN)
    try:
        yield
    finally:
        for signum, handler in saved.items():
            signal.signal(signum, handler)


def _ignored_by_child() -> set[int]:
    """The signals a session's shell ignores, read from its /proc status."""
    account = lookup_account(pwd.getpwuid(os.geteuid()).pw_name)
    child = spawn(account, [account.shell, "-c", "cat /proc/self/status"],
                  {"PATH": "/usr/bin:/bin"})
    try:
        os.set_blocking(child.stdout, True)
        out = b""
        while chunk := os.read(child.stdout, 65536):
            out += chunk
    finally:
        for fd in (child.stdin, child.stdout, child.stderr, child.pidfd):
            os.close(fd)
        os.waitpid(child.pid, 0)
    mask = next(int(line.split()[1], 16) for line in out.decode().splitlines()
                if line.startswith("SigIgn:"))
    return {signum for signum in SESSION_SIGNALS if mask & (1 << (signum - 1))}


def test_a_node_that_ignores_hang_ups_does_not_pass_that_on(node_ignores_signals: None
                                                            ) -> None:
    assert _ignored_by_child() == set(SESSION_SIGNALS)  # what happened before
    unignore_session_signals()
    assert _ignored_by_child() == set()
    for signum in SESSION_SIGNALS:  # the node itself still takes no notice of them
        assert signal.getsignal(signum) not in (signal.SIG_IGN, signal.SIG_DFL)
        os.kill(os.getpid(), signum)


@pytest.mark.parametrize(("shell", "served"), [
    ("/bin/bash", True), ("/usr/bin/zsh", True), ("/bin/sh", True),
    ("/usr/sbin/nologin", False), ("/bin/false", False), ("/usr/bin/git-shell", False),
    ("/bin/rbash", False), ("/opt/custom/menu", False), ("", False)])
def test_a_subsystem_is_served_only_to_a_login_with_a_regular_shell(shell: str,
                                                                    served: bool) -> None:
    refusal = subsystem_refusal(Account("svc", 990, 990, "/srv", shell))
    assert (refusal is None) == served
    if not served:
        assert refusal is not None and "login svc" in refusal and "regular shell" in refusal
