"""Where and whether `ssh -R` may listen on a node (node.remoteforward)."""

from __future__ import annotations

import pytest

from gatehouse.node.remoteforward import MAX_REMOTE_FORWARDS, bind_host, refusal


def test_a_role_must_allow_it() -> None:
    assert refusal(allowed=False, login="root", login_uid=0, port=8080, held=0) == \
        "port forwarding is not allowed by the user's roles"
    assert refusal(allowed=True, login="root", login_uid=0, port=8080, held=0) is None


@pytest.mark.parametrize(("login", "uid", "port", "ok"), [
    ("root", 0, 80, True), ("deploy", 1000, 80, False), ("deploy", 1000, 1023, False),
    ("deploy", 1000, 1024, True), ("deploy", 1000, 0, True), ("ghost", None, 22, False),
])
def test_privileged_ports_only_for_uid_0(login: str, uid: int | None, port: int,
                                         ok: bool) -> None:
    reason = refusal(allowed=True, login=login, login_uid=uid, port=port, held=0)
    assert (reason is None) == ok, reason
    if not ok:
        assert reason == f"port {port} is privileged: only a login with uid 0 may listen " \
                         f"on it, not {login}"


def test_listeners_per_connection_are_bounded() -> None:
    assert refusal(allowed=True, login="u", login_uid=5, port=0,
                   held=MAX_REMOTE_FORWARDS - 1) is None
    assert "the most allowed" in str(refusal(allowed=True, login="u", login_uid=5, port=0,
                                             held=MAX_REMOTE_FORWARDS))


@pytest.mark.parametrize(("asked", "bound"), [
    ("", "127.0.0.1"), ("0.0.0.0", "127.0.0.1"), ("*", "127.0.0.1"), ("10.0.0.7", "127.0.0.1"),
    ("localhost", "127.0.0.1"), ("::", "127.0.0.1"), ("::1", "::1"), ("[::1]", "::1"),
])
def test_only_loopback_whatever_is_asked(asked: str, bound: str) -> None:
    assert bind_host(asked) == bound
