"""How `gsh ssh` reads its options, as OpenSSH's ssh(1) reads its own (pure).

ssh(1) reads options before the host and again after it: ssh.c restarts getopt
after taking the host, until the first word that is not an option; a `--` there
ends the options and is dropped; the rest is the remote command. Short options
cluster as getopt(3) allows (`-tN`, `-p22`, `-L8080:db:5432`). gsh reads its own
options after LOGIN@NODE the same way, with one difference that keeps commands
that begin with `-` working: a word that is not one of gsh's options starts the
command, as given (ssh(1) would refuse an unknown option).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from gatehouse.errors import BadParameter

__all__ = ["OPTIONS", "SshOptions", "read_options"]

# gsh ssh's options (gsh.py declares the same; tests/cli/test_connect.py checks) and
# whether each takes a value.
OPTIONS = {"--cluster": True, "-t": False, "-N": False, "-p": True, "-L": True, "-R": True}


class SshOptions(NamedTuple):  # a NamedTuple: a dataclass costs gsh's start-up ~1.5 ms
    cluster: str = ""  # "" = the selected cluster
    tty: bool = False  # -t: a PTY even with a command
    port: int = 0  # -p: the node registered at HOST:PORT; 0 = by name
    forwards: tuple[str, ...] = ()  # -L specs, as given
    remote_forwards: tuple[str, ...] = ()  # -R specs, as given
    no_command: bool = False  # -N: no command, no shell (forwarding only)


NO_OPTIONS = SshOptions()


def read_options(args: Sequence[str], opts: SshOptions = NO_OPTIONS
                 ) -> tuple[SshOptions, list[str]]:
    """The options at the front of ``args`` added to ``opts``, and the words from the
    first that is not one of gsh's options (a leading `--` dropped). BadParameter: an
    option without its value, or a bad port."""
    i = 0
    while i < len(args):
        if args[i] == "--":
            return opts, list(args[i + 1:])
        found = _read_word(args[i], args[i + 1:i + 2])
        if found is None:
            break
        pairs, used = found
        for name, value in pairs:
            opts = _apply(opts, name, value)
        i += 1 + used
    return opts, list(args[i:])


def _read_word(word: str, following: Sequence[str]
               ) -> tuple[list[tuple[str, str]], int] | None:
    """The options in ``word`` (with a value from ``following`` if it ends in one that
    takes it) and how many following words they used; None if ``word`` is not options."""
    if word.startswith("--"):
        name, eq, value = word.partition("=")
        if name not in OPTIONS or (eq and not OPTIONS[name]):
            return None
        if not OPTIONS[name] or eq:
            return [(name, value)], 0
        return [(name, _value(name, following))], 1
    if not word.startswith("-") or word == "-":
        return None
    pairs: list[tuple[str, str]] = []
    for at, letter in enumerate(word[1:], start=2):
        name = "-" + letter
        if name not in OPTIONS:
            return None
        if OPTIONS[name]:
            if word[at:]:
                return [*pairs, (name, word[at:])], 0
            return [*pairs, (name, _value(name, following))], 1
        pairs.append((name, ""))
    return pairs, 0


def _value(name: str, following: Sequence[str]) -> str:
    if not following:
        raise BadParameter(f"option {name} needs a value")
    return following[0]


def _apply(opts: SshOptions, name: str, value: str) -> SshOptions:
    if name == "--cluster":
        return opts._replace(cluster=value)
    if name == "-t":
        return opts._replace(tty=True)
    if name == "-N":
        return opts._replace(no_command=True)
    if name == "-p":
        if not (value.isascii() and value.isdigit()) or not 1 <= int(value) <= 65535:
            raise BadParameter(f"-p wants a port from 1 to 65535, not {value!r}")
        return opts._replace(port=int(value))
    if name == "-R":
        return opts._replace(remote_forwards=(*opts.remote_forwards, value))
    return opts._replace(forwards=(*opts.forwards, value))
