"""`gsh ssh`'s options read as ssh(1) reads its own: before LOGIN@NODE, and after it up
to the first other word or a `--`."""

from __future__ import annotations

import pytest

from gatehouse.cli.sshargs import SshOptions, read_options
from gatehouse.errors import BadParameter


@pytest.mark.parametrize(("args", "opts", "command"), [
    # what follows the target, as ssh(1) reads it
    (["ls", "-la"], SshOptions(), ["ls", "-la"]),
    (["--", "ls", "-la"], SshOptions(), ["ls", "-la"]),  # the `--` is dropped
    (["-t", "top"], SshOptions(tty=True), ["top"]),
    (["-p", "3022", "true"], SshOptions(port=3022), ["true"]),
    (["-p3022", "-tN"], SshOptions(port=3022, tty=True, no_command=True), []),
    (["-tp", "22", "--", "-t"], SshOptions(tty=True, port=22), ["-t"]),
    (["-L", "1:h:2", "-L3:h:4"], SshOptions(forwards=("1:h:2", "3:h:4")), []),
    (["-R", "0:h:2", "-NR3:h:4", "-L5:h:6"], SshOptions(
        forwards=("5:h:6",), remote_forwards=("0:h:2", "3:h:4"), no_command=True), []),
    (["--cluster", "leaf", "uname"], SshOptions(cluster="leaf"), ["uname"]),
    (["--cluster=leaf", "--", "--cluster=x"], SshOptions(cluster="leaf"), ["--cluster=x"]),
    # a word that is not one of gsh's options starts the command, as given
    (["-la"], SshOptions(), ["-la"]),
    (["-tx", "-t"], SshOptions(), ["-tx", "-t"]),
    (["--tty", "-t"], SshOptions(), ["--tty", "-t"]),
    (["-t=1"], SshOptions(), ["-t=1"]),
    (["-"], SshOptions(), ["-"]),
    (["ls", "--", "-t"], SshOptions(), ["ls", "--", "-t"]),
    ([], SshOptions(), []),
])
def test_options_then_the_command(args: list[str], opts: SshOptions, command: list[str]) -> None:
    assert read_options(args) == (opts, command)


def test_options_after_the_target_add_to_those_before() -> None:
    before = SshOptions(cluster="a", forwards=("1:h:2",))
    assert read_options(["--cluster=b", "-L", "3:h:4", "x"], before) == (
        SshOptions(cluster="b", forwards=("1:h:2", "3:h:4")), ["x"])


@pytest.mark.parametrize(("args", "message"), [
    (["-p"], "option -p needs a value"),
    (["-tL"], "option -L needs a value"),
    (["--cluster"], "option --cluster needs a value"),
    (["-p", "ssh"], "-p wants a port from 1 to 65535, not 'ssh'"),
    (["-p0"], "-p wants a port from 1 to 65535, not '0'"),
    (["-p", "65536"], "-p wants a port from 1 to 65535, not '65536'"),
    (["-p", "²"], "-p wants a port from 1 to 65535, not '²'"),
])
def test_a_bad_option_says_which(args: list[str], message: str) -> None:
    with pytest.raises(BadParameter) as err:
        read_options(args)
    assert str(err.value) == message
