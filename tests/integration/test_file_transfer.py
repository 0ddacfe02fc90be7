"""File transfer through the plane: OpenSSH's scp and sftp through `gsh config`, and
`gsh scp`, to a root's node and to a leaf's through the root; each file operation
audited at the leaf and forwarded to the root; refused for a role with
``options.file_transfer: false``.

The transfers run as a login created for the module (a real non-root user), so the
files written on the node must belong to it, and its permissions must hold.
"""

from __future__ import annotations

import hashlib
import os
import pwd
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gatehouse.process.harness import Client, Cluster, in_parallel, join, run, wait_for

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("useradd") is None or shutil.which("scp") is None
    or shutil.which("sftp") is None,
    reason="needs root (to create a login), useradd and OpenSSH's scp and sftp")

ROOT, LEAF = "sso.example.com", "us-east-1a"
BIG = 50 * 1024 * 1024
NOFILES = """kind: role
version: v1
metadata: {name: nofiles}
spec:
  options: {file_transfer: false}
  allow:
    logins: ["{{internal.logins}}"]
    node_labels: {"*": "*"}
"""


class Pair:
    def __init__(self, base: Path, login: str) -> None:
        self.root = Cluster(base / "root", name=ROOT)
        self.leaf = Cluster(base / "leaf", name=LEAF)
        self.login = login
        self.home = Path(pwd.getpwnam(login).pw_dir)


@pytest.fixture(scope="module")
def login() -> Iterator[str]:
    """A real non-root login with a home of its own, removed afterwards."""
    name = "gh-ft-" + uuid.uuid4().hex[:8]
    subprocess.run(["useradd", "-m", "-s", "/bin/sh", name], check=True, timeout=30)
    try:
        yield name
    finally:
        subprocess.run(["userdel", "-r", name], check=False, timeout=30,
                       stderr=subprocess.DEVNULL)


@pytest.fixture(scope="module")
def pair(login: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    p = Pair(tmp_path_factory.mktemp("ft"), login)
    try:
        in_parallel(p.root.start, p.leaf.start)
        p.root.create(NOFILES).ok()
        join(p.leaf, p.root, "{remote: access, local: [access]}")
        yield p
    finally:
        p.root.stop(wait=False)
        p.leaf.stop(wait=False)


@pytest.fixture
def user(pair: Pair, tmp_path: Path, username: str) -> Client:
    """A root user of the test's own (role access, the module's login), logged in."""
    return pair.root.logged_in(username, tmp_path / "home", logins=pair.login)


@pytest.fixture(scope="module")
def big_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("data") / "big.bin"
    path.write_bytes(os.urandom(BIG))
    return path


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _openssh(tool: str, me: Client, *args: str) -> Any:
    config = me.openssh_config()
    return run([tool, "-F", str(config), "-o", "BatchMode=yes",
                "-o", "GlobalKnownHostsFile=/dev/null", *args], env=me.env(), timeout=120)


def _sftp_events(pair: Pair, user: str, cluster: str, count: int) -> list[dict[str, Any]]:
    """The root's ``sftp`` events of ``user`` on ``cluster``, oldest first, once there
    are ``count`` (a leaf's arrive through its tunnel a moment later)."""
    def found() -> list[dict[str, Any]] | None:
        events = pair.root.events("--type=sftp", f"--user={user}", f"--cluster={cluster}")
        return events[::-1] if len(events) >= count else None

    events = wait_for(f"{count} sftp events of {user} at the root", found, timeout=30)
    assert len(events) == count, events
    return events


def _ops(events: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    return [(e["code"], e["login"], e["fields"]["action"], Path(e["fields"]["path"]).name,
             e["fields"].get("bytes_read"), e["fields"].get("bytes_written"),
             e["fields"]["error"]) for e in events]


def _owned_by_login(pair: Pair, path: Path) -> None:
    assert path.stat().st_uid == pwd.getpwnam(pair.login).pw_uid, path


@pytest.mark.parametrize("cluster", [ROOT, LEAF])
def test_openssh_scp_both_ways(pair: Pair, user: Client, username: str, big_file: Path,
                               tmp_path: Path, cluster: str) -> None:
    name = f"scp-{cluster}.bin"
    target = f"{pair.login}@node1.{cluster}"
    res = _openssh("scp", user, str(big_file), f"{target}:{name}").ok()
    assert res.err == "", res  # not even from the ProxyCommand once ssh closed its stdout
    _owned_by_login(pair, pair.home / name)
    assert _sha(pair.home / name) == _sha(big_file)
    back = tmp_path / "back.bin"
    _openssh("scp", user, f"{target}:{name}", str(back)).ok()
    assert _sha(back) == _sha(big_file)
    events = _sftp_events(pair, username, cluster, 2)
    assert _ops(events) == [("TS001I", pair.login, "write", name, 0, BIG, ""),
                            ("TS001I", pair.login, "read", name, BIG, 0, "")]
    assert {e["cluster"] for e in events} == {cluster}


def test_openssh_sftp_to_a_leaf_node_each_operation_audited_at_the_root(
        pair: Pair, user: Client, username: str, big_file: Path, tmp_path: Path) -> None:
    back = tmp_path / "back.bin"
    batch = tmp_path / "batch"
    batch.write_text(f"put {big_file} sftp.bin\nget sftp.bin {back}\nmkdir sftp-dir\n"
                     "rename sftp.bin sftp-dir/moved.bin\nrm sftp-dir/moved.bin\n"
                     "rmdir sftp-dir\n")
    _openssh("sftp", user, "-b", str(batch), f"{pair.login}@node1.{LEAF}").ok()
    assert _sha(back) == _sha(big_file)
    assert not (pair.home / "sftp-dir").exists() and not (pair.home / "sftp.bin").exists()
    events = _sftp_events(pair, username, LEAF, 6)
    assert _ops(events) == [
        ("TS001I", pair.login, "write", "sftp.bin", 0, BIG, ""),
        ("TS001I", pair.login, "read", "sftp.bin", BIG, 0, ""),
        ("TS001I", pair.login, "mkdir", "sftp-dir", None, None, ""),
        ("TS001I", pair.login, "rename", "sftp.bin", None, None, ""),
        ("TS001I", pair.login, "remove", "moved.bin", None, None, ""),
        ("TS001I", pair.login, "rmdir", "sftp-dir", None, None, ""),
    ]
    assert Path(events[3]["fields"]["target"]).name == "moved.bin"
    assert events[0]["message"].endswith(f"sftp.bin: {BIG} bytes"), events[0]
    # The leaf keeps its own copy; the transfer's session is not a recording.
    assert len(pair.leaf.events("--type=sftp", f"--user={username}")) == 6
    start = next(e for e in pair.root.events("--type=session.start", f"--user={username}")
                 if e["session_id"] == events[0]["session_id"])
    assert start["fields"]["subsystem"] == "sftp" and start["fields"]["recorded"] is False


def test_the_logins_permissions_hold(pair: Pair, user: Client, tmp_path: Path) -> None:
    small = tmp_path / "small.txt"
    small.write_text("not for root's home\n")
    res = _openssh("scp", user, str(small), f"{pair.login}@node1.{ROOT}:/root/planted.txt")
    assert res.rc != 0 and "Permission denied" in res.err, res
    assert not Path("/root/planted.txt").exists()


def test_a_role_with_file_transfer_false_refuses_it(
        pair: Pair, tmp_path: Path, username: str) -> None:
    me = pair.root.logged_in(username, tmp_path / "home", roles="nofiles", logins=pair.login)
    small = tmp_path / "small.txt"
    small.write_text("refused\n")
    reason = "file transfer is not allowed: role nofiles sets options.file_transfer: false"
    res = _openssh("scp", me, str(small), f"{pair.login}@node1.{ROOT}:refused.txt")
    assert res.rc != 0 and reason in res.err, res
    res = _openssh("sftp", me, f"{pair.login}@node1.{ROOT}")
    assert res.rc != 0 and reason in res.err, res
    # scp -O: the original protocol, a command (scp -t) on the node instead of sftp.
    res = _openssh("scp", me, "-O", str(small), f"{pair.login}@node1.{ROOT}:refused.txt")
    assert res.rc != 0 and reason in res.err, res
    assert not (pair.home / "refused.txt").exists()
    # A shell or a command is not a file transfer: still allowed.
    assert me.openssh(me.openssh_config(), f"{pair.login}@node1.{ROOT}", "id -un").out \
        == f"{pair.login}\n"
    denied = wait_for("three sftp.denied events", lambda: (
        found if len(found := pair.root.events("--type=sftp.denied", f"--user={username}"))
        >= 3 else None))
    assert [(e["code"], e["login"], e["message"]) for e in denied] == \
        [("TS001W", pair.login, reason)] * 3


def _tree(base: Path) -> dict[str, str]:
    return {str(p.relative_to(base)): _sha(p) for p in sorted(base.rglob("*")) if p.is_file()}


def test_gsh_scp_both_ways_with_r_to_a_leaf_node(
        pair: Pair, user: Client, username: str, tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    (tree / "sub").mkdir(parents=True)
    (tree / "a.txt").write_text("hello\n")
    (tree / "sub" / "b.bin").write_bytes(os.urandom(3 * 1024 * 1024 + 17))
    target = f"{pair.login}@node1"
    user.gsh("scp", "-r", f"--cluster={LEAF}", str(tree), f"{target}:gsh-tree").ok()
    assert _tree(pair.home / "gsh-tree") == _tree(tree)
    for path in (pair.home / "gsh-tree").rglob("*"):
        _owned_by_login(pair, path)
    one = tmp_path / "one.bin"
    user.gsh("scp", f"--cluster={LEAF}", f"{target}:gsh-tree/sub/b.bin", str(one)).ok()
    assert _sha(one) == _sha(tree / "sub" / "b.bin")
    back = tmp_path / "back"
    user.gsh("scp", "-r", f"--cluster={LEAF}", f"{target}:gsh-tree", str(back)).ok()
    assert _tree(back) == _tree(tree)
    events = _sftp_events(pair, username, LEAF, 7)
    assert sorted(op[2:6] for op in _ops(events)) == sorted([
        ("mkdir", "gsh-tree", None, None), ("mkdir", "sub", None, None),
        ("write", "a.txt", 0, 6), ("write", "b.bin", 0, 3 * 1024 * 1024 + 17),
        ("read", "b.bin", 3 * 1024 * 1024 + 17, 0),
        ("read", "a.txt", 6, 0), ("read", "b.bin", 3 * 1024 * 1024 + 17, 0)])


def test_gsh_scp_to_a_root_node_and_its_errors(
        pair: Pair, user: Client, tmp_path: Path) -> None:
    small = tmp_path / "small.txt"
    small.write_text("to the root's node\n")
    target = f"{pair.login}@node1"
    user.gsh("scp", str(small), f"{target}:").ok()
    assert (pair.home / "small.txt").read_text() == "to the root's node\n"
    _owned_by_login(pair, pair.home / "small.txt")
    res = user.gsh("scp", f"{target}:no-such-file", str(tmp_path))
    assert (res.rc, res.err_lines) == (1, ["error: cannot copy: No such file"]), res
    res = user.gsh("scp", str(small), f"{target}:/root/planted.txt")
    assert (res.rc, res.err_lines) == (1, ["error: cannot copy: Permission denied"]), res
    res = user.gsh("scp", str(small), str(tmp_path / "x"))
    assert res.rc == 2 and "one side must be LOGIN@NODE:PATH" in res.err, res


def test_gsh_scp_refused_by_a_role_says_why(pair: Pair, tmp_path: Path, username: str) -> None:
    me = pair.root.logged_in(username, tmp_path / "home", roles="nofiles", logins=pair.login)
    res = me.gsh("scp", str(me.home), f"{pair.login}@node1:x")
    assert (res.rc, res.err_lines) == (1, [
        f"error: {pair.login}@node1: file transfer is not allowed: role nofiles sets "
        "options.file_transfer: false"]), res


def test_sftp_starts_through_the_login_s_shell(pair: Pair, tmp_path: Path, username: str,
                                              big_file: Path) -> None:
    """As sshd runs a subsystem: ``shell -c sftp-server``. So a login whose shell refuses
    sessions (nologin, git-shell) serves no sftp either: file access to such a service
    account would be a way around its shell."""
    service = "gh-nl-" + uuid.uuid4().hex[:8]
    subprocess.run(["useradd", "-m", "-s", "/usr/sbin/nologin", service], check=True,
                   timeout=30)
    try:
        pair.root.add_user(username, roles="access", logins=service)
        me = Client(tmp_path / "home", pair.root.proxy)
        me.home.mkdir()
        me.login(username).ok()
        config = me.openssh_config()
        res = run(["sftp", "-F", str(config), "-o", "BatchMode=yes",
                   "-o", "GlobalKnownHostsFile=/dev/null", "-b", "-",
                   f"{service}@node1.{ROOT}"],
                  env=me.env(), input=f"put {big_file} planted.bin\n", timeout=120)
        assert res.rc != 0, res
        assert not (Path(pwd.getpwnam(service).pw_dir) / "planted.bin").exists()
    finally:
        subprocess.run(["userdel", "-r", service], check=False, timeout=30,
                       stderr=subprocess.DEVNULL)
