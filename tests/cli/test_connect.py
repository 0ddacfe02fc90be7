"""`gsh ssh` / `gsh proxy ssh` parsed without typer: the same calls as typer makes, or
nothing (typer then answers: help, usage errors)."""

from __future__ import annotations

from typing import Any

import pytest
import typer
from typer.core import TyperCommand, TyperGroup, TyperOption
from typer.testing import CliRunner

from gatehouse.cli import connect, sshargs
from gatehouse.cli.connect import Invocation, parse
from gatehouse.cli.gsh import app
from gatehouse.cli.sshargs import SshOptions
from gatehouse.errors import BadParameter

SAME_AS_TYPER = [
    ["ssh", "root@n1", "true"],
    ["ssh", "root@n1"],
    ["ssh", "--cluster=leaf", "root@n1", "uname", "-a"],
    ["ssh", "--cluster", "leaf", "-t", "root@n1", "top"],
    ["ssh", "-t", "root@n1", "--cluster=x", "-t"],  # after LOGIN@NODE: the command
    ["ssh", "root@n1", "--", "ls"],
    ["ssh", "-p", "3022", "root@127.0.0.1", "true"],
    ["ssh", "-p3022", "-tN", "-L", "8080:db:5432", "-L9090:[::1]:80", "root@n1"],
    ["ssh", "-tp", "22", "--", "root@n1", "-t", "ls"],
    ["ssh", "root@n1", "-p", "22", "-L", "1:h:2", "--", "ls", "-la"],
    ["ssh", "-R", "0:localhost:80", "-NR9000:h:2", "root@n1"],
    ["--debug", "ssh", "root@n1", "true"],
    ["proxy", "ssh", "root@n1.leaf"],
    ["proxy", "ssh", "root@n1:2222", "--cluster=leaf"],
    ["proxy", "ssh", "--cluster", "leaf", "root@n1"],
]


@pytest.mark.parametrize("argv", SAME_AS_TYPER, ids=" ".join)
def test_fast_path_makes_the_call_typer_makes(argv: list[str],
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[Any, ...]] = []
    monkeypatch.setattr(connect, "ssh", lambda *a: calls.append(("ssh", *a)) or 0)
    monkeypatch.setattr(connect, "proxy_ssh", lambda *a: calls.append(("proxy", *a)) or 0)
    result = CliRunner().invoke(app, argv)
    assert result.exit_code == 0, result.output
    invocation = parse(argv)
    assert invocation is not None
    assert invocation.run() == 0
    assert len(calls) == 2 and calls[0] == calls[1]


def test_what_it_recognises() -> None:
    assert parse(["--debug", "ssh", "--cluster=leaf", "-t", "alice@db", "ls", "-l"]) == \
        Invocation("ssh", ("alice", "db"), ["ls", "-l"], SshOptions(cluster="leaf", tty=True),
                   debug=True)
    # what follows LOGIN@NODE is read by connect.ssh, for both ways in
    assert parse(["ssh", "-Np", "22", "-L8080:db:80", "a@db", "-t", "--", "x"]) == \
        Invocation("ssh", ("a", "db"), ["-t", "--", "x"],
                   SshOptions(port=22, forwards=("8080:db:80",), no_command=True))
    assert parse(["proxy", "ssh", "root@n.leaf:22"]) == \
        Invocation("proxy ssh", ("root", "n.leaf:22"))


@pytest.mark.parametrize("argv", [
    [], ["ls"], ["ssh"], ["ssh", "--help"], ["ssh", "-h", "root@n"], ["ssh", "--bogus", "a@b"],
    ["ssh", "--cluster"], ["ssh", "-t=yes", "a@b"], ["ssh", "nobody"], ["ssh", "@node"],
    ["ssh", "root@"], ["ssh", "-p", "x", "a@b"], ["ssh", "-p", "0", "a@b"], ["ssh", "-L"],
    ["ssh", "-tX", "a@b"], ["ssh", "-R"], ["proxy", "ssh"], ["proxy", "ssh", "a@b", "c@d"],
    ["proxy", "ssh", "a@b", "--help"], ["proxy", "ls"], ["--verbose", "ssh", "a@b"],
], ids=lambda argv: " ".join(argv) or "(nothing)")
def test_anything_else_is_left_to_typer(argv: list[str]) -> None:
    assert parse(argv) is None


def _options(command: TyperCommand | TyperGroup) -> set[str]:
    return {opt for p in command.params if isinstance(p, TyperOption)
            for opt in (*p.opts, *p.secondary_opts)} - {"--help"}


def test_the_fast_path_knows_exactly_the_options_gsh_declares() -> None:
    group = typer.main.get_command(app)
    assert isinstance(group, TyperGroup)
    ssh, proxy = group.commands["ssh"], group.commands["proxy"]
    assert isinstance(ssh, TyperCommand) and isinstance(proxy, TyperGroup)
    proxy_ssh = proxy.commands["ssh"]
    assert isinstance(proxy_ssh, TyperCommand)
    assert _options(ssh) == set(sshargs.OPTIONS)
    assert _options(proxy_ssh) == set(connect.PROXY_SSH_OPTIONS)
    assert _options(group) == set(connect.GLOBAL_FLAGS)
    for command, known in ((ssh, sshargs.OPTIONS), (proxy_ssh, connect.PROXY_SSH_OPTIONS)):
        takes_value = {o for p in command.params if isinstance(p, TyperOption)
                       and not p.is_flag for o in p.opts}
        assert takes_value == {o for o, value in known.items() if value}


@pytest.mark.parametrize(("node", "port", "target"), [
    ("127.0.0.1", 3022, "127.0.0.1:3022"), ("node1", 22, "node1:22"),
    ("::1", 3022, "[::1]:3022"), ("[::1]", 3022, "[::1]:3022"),
])
def test_dash_p_names_the_node_at_that_address(node: str, port: int, target: str) -> None:
    assert connect._with_port(node, port) == target


@pytest.mark.parametrize("node", ["127.0.0.1:3022", "[::1]:3022"])
def test_dash_p_and_a_port_in_the_target_is_one_port_too_many(node: str) -> None:
    with pytest.raises(BadParameter, match="give the port once"):
        connect._with_port(node, 22)
