"""`gsh ssh` and `gsh proxy ssh`: the two commands whose start-up is the product
(and `gsh scp`, which dials as `gsh ssh` does).

Both are defined (with their --help) in gsh.py, through typer. But typer imports
click and pydantic and builds a pydantic adapter per parameter on every run:
~100 ms on this machine, a third of what plain `ssh host true` takes. So
`gsh_main.main` first tries :func:`parse`, which accepts exactly the argument shapes
those typer definitions accept and nothing else; anything it does not recognise
(``--help``, an unknown option, a malformed target) goes to typer, so help and
usage errors read the same either way. The commands themselves live here once,
and both ways call them.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from gatehouse.cli.common import die, run_async, setup_logging
from gatehouse.cli.sshargs import SshOptions, read_options
from gatehouse.client.profile import Profile
from gatehouse.errors import AccessDenied, BadParameter, GatehouseError, NotFound

if TYPE_CHECKING:
    from gatehouse.client.dialer import ProxyTunnel
    from gatehouse.client.forwardspec import PortForward

__all__ = ["Invocation", "parse", "proxy_ssh", "scp", "split_target", "ssh", "try_fast"]


# The options gsh.py declares for `gsh` and `gsh proxy ssh` (tests/cli/test_connect.py
# checks that they agree; `gsh ssh`'s are sshargs.OPTIONS), and whether each takes a value.
GLOBAL_FLAGS = ("--debug",)
PROXY_SSH_OPTIONS = {"--cluster": True}


def split_target(target: str) -> tuple[str, str] | None:
    """LOGIN@NODE -> (login, node), or None when malformed."""
    login, sep, node = target.partition("@")
    if not sep or not login or not node:
        return None
    return login, node


def _fresh_profile() -> Profile:
    try:
        profile = Profile.load()
        profile.check_fresh()
    except GatehouseError as exc:
        die(str(exc), 255)
    return profile


def ssh(target: tuple[str, str], args: list[str], opts: SshOptions) -> int:
    """Run the command in ``args`` (or a shell) on the node; returns its exit status
    (255: no session). Options at the front of ``args`` (after LOGIN@NODE) are read as
    ssh(1) reads them there (see sshargs)."""
    login, node = target
    forwards: list[PortForward] = []
    try:
        opts, command = read_options(args, opts)
        if opts.forwards or opts.remote_forwards:
            from gatehouse.client.forwardspec import PortForward

            forwards = [*(PortForward.parse(spec) for spec in opts.forwards),
                        *(PortForward.parse(spec, remote=True) for spec in opts.remote_forwards)]
        if opts.port:
            node = _with_port(node, opts.port)
    except BadParameter as exc:
        die(str(exc), 2)
    if opts.no_command and command:
        die("-N runs no command: give either -N or COMMAND", 2)
    profile = _fresh_profile()
    return run_async(_ssh(profile, login, node, command, opts, forwards), error_code=255)


def _with_port(node: str, port: int) -> str:
    """``-p PORT``: the node registered at NODE:PORT (an address the node advertises)."""
    bracketed = node.startswith("[")
    has_port = "]:" in node if bracketed else node.count(":") == 1  # IPv6 hosts: [::1]:22
    if has_port:
        raise BadParameter(f"give the port once: {node} already has one, and -p {port}")
    return f"[{node}]:{port}" if ":" in node and not bracketed else f"{node}:{port}"


class _Refused(AccessDenied):
    """The proxy refused to dial the node by name (before any session started)."""


def _looks_like_address(node: str) -> bool:
    """HOST:PORT, or an IP address: what an OpenSSH user types for a host."""
    import ipaddress

    if ":" in node:
        return True
    try:
        ipaddress.ip_address(node)
    except ValueError:
        return False
    return True


async def _cluster_of(profile: Profile, node: str, tried: str, refusal: AccessDenied) -> str:
    """The one other cluster where the user may see a node named ``node`` (its hostname
    or host id), after the proxy refused it in ``tried``: the root's nodes and its
    inventory of every reachable leaf (one request each). ``refusal`` stands when the
    name is in ``tried`` (it is there, but not for this user); several clusters, or none,
    is one line (BadParameter, NotFound)."""
    from gatehouse import inventory
    from gatehouse.client.login import find_node
    from gatehouse.types.node import Node

    candidates = [Node.model_validate(n) for n in await find_node(profile, node)]
    if any(n.spec.cluster == tried and node in (n.spec.hostname, n.metadata.name)
           for n in candidates):
        raise refusal
    try:
        found = inventory.pick(candidates, node)
    except NotFound:
        raise NotFound(f"{refusal}; no node {node} in any other cluster you can reach "
                       "either") from None
    _say(f"{node} is in cluster {found.spec.cluster}")
    return found.spec.cluster

def _say(line: str) -> None:
    """gsh's own word during a session: one line on stderr."""
    print(f"gsh: {line}", file=sys.stderr, flush=True)


@contextlib.asynccontextmanager
async def _dialed(profile: Profile, node: str, cluster: str
                  ) -> AsyncIterator[tuple[ProxyTunnel, str]]:
    """The proxy's tunnel to ``node`` of ``cluster``, and the host CA that must vouch for
    the node; AccessDenied when the proxy refuses. No ``cluster``: the selected one, or,
    if the proxy refuses the name there, the one other cluster the user may see it in."""
    if not cluster and not _looks_like_address(node):
        try:
            async with _dialed(profile, node, profile.selected) as dialed:
                yield dialed
                return
        except _Refused as refused:
            cluster = await _cluster_of(profile, node, profile.selected, refused)
    # The dial goes out first; asyncssh (the bulk of gsh's start-up) loads while the
    # proxy looks the node up and connects, and the node sends its first bytes.
    from gatehouse.client.dialer import ProxyTunnel
    from gatehouse.client.fallback import leaf_fallback
    from gatehouse.wire.dial import DialRequest
    from gatehouse.wire.names import ALPN_SSH

    cluster = cluster or profile.selected
    if cluster not in profile.clusters():  # a leaf that joined since the list was cached
        from gatehouse.client.login import refresh_clusters

        await refresh_clusters(profile)
    host_ca = profile.host_ca_for(node, cluster)  # before anything is dialed
    tunnel = ProxyTunnel(profile.proxy, profile.ssl_context([ALPN_SSH]), profile.server_name,
                         DialRequest(target=node, cluster=cluster),
                         leaf_fallback(profile, cluster, _say))
    try:
        await tunnel.sent()
        import gatehouse.client.ssh  # noqa: F401 (asyncssh, while the proxy dials)

        try:
            await tunnel.reply()
        except AccessDenied as exc:  # the proxy's refusal (not found, not allowed)
            if not _looks_like_address(node):
                raise _Refused(str(exc)) from None
            raise AccessDenied(f"{exc}; nodes are addressed by name or host id (`gsh ls` "
                               "lists them), or by the exact address a node advertises"
                               ) from exc
        yield tunnel, host_ca
    finally:
        tunnel.close()


async def _ssh(profile: Profile, login: str, node: str, command: list[str], opts: SshOptions,
               forwards: list[PortForward]) -> int:
    async with _dialed(profile, node, opts.cluster) as (tunnel, host_ca):
        from gatehouse.client.ssh import run_ssh

        return await run_ssh(profile, login, node, command, host_ca=host_ca,
                             force_tty=opts.tty, tunnel=tunnel, forwards=forwards,
                             no_command=opts.no_command)


def scp(args: list[str], *, recursive: bool, cluster: str) -> int:
    """`gsh scp [-r] SRC... DST`: copy to or from a node; 0, or one line and 1."""
    from gatehouse.client.copyspec import parse_copy

    try:
        spec = parse_copy(args)
    except BadParameter as exc:
        die(str(exc), 2)
    profile = _fresh_profile()

    async def copy() -> None:
        async with _dialed(profile, spec.node, cluster) as (tunnel, host_ca):
            from gatehouse.client.scp import copy_files

            await copy_files(profile, spec, recursive=recursive, host_ca=host_ca,
                             tunnel=tunnel)

    run_async(copy())
    return 0


def proxy_ssh(hostport: str, cluster: str) -> int:
    """Connect stdin/stdout to the node's SSH server through the proxy."""
    from gatehouse.client.proxycmd import proxy_stdio

    host, _, port = hostport.partition(":")
    if port and not port.isdigit():
        die(f"bad port in {hostport!r}", 255)
    profile = _fresh_profile()
    node, node_cluster = host, cluster
    if not node_cluster:
        node, node_cluster = profile.split_host(host)
    from gatehouse.client.fallback import leaf_fallback

    run_async(proxy_stdio(profile, node, node_cluster, int(port or 0),
                          leaf_fallback(profile, node_cluster, _say)), error_code=255)
    return 0


@dataclass(frozen=True)
class Invocation:
    """A recognised command line: `ssh` (target, the words after it, the options before
    it) or `proxy ssh` (target, options.cluster), and whether --debug was given."""

    name: str
    target: tuple[str, str]
    args: list[str] = field(default_factory=list)
    opts: SshOptions = field(default_factory=SshOptions)
    debug: bool = False

    def run(self) -> int:
        if self.name == "ssh":
            return ssh(self.target, self.args, self.opts)
        return proxy_ssh(self.target[1], self.opts.cluster)


def _options(args: list[str], known: dict[str, bool]
             ) -> tuple[dict[str, str | bool], list[str]] | None:
    """Split options from positionals (interspersed, as click allows by default);
    ``known`` maps an option to whether it takes a value. None when an option is unknown
    or lacks its value."""
    opts: dict[str, str | bool] = {}
    rest: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--":
            rest += args[i + 1:]
            break
        if arg.startswith("-") and arg != "-":
            name, eq, value = arg.partition("=")
            if name not in known or (eq and not known[name]):
                return None
            if known[name] and not eq:
                i += 1
                if i >= len(args):
                    return None
                value = args[i]
            opts[name] = value if known[name] else True
        else:
            rest.append(arg)
        i += 1
    return opts, rest


def parse(argv: list[str]) -> Invocation | None:
    """The invocation for ``gsh ARGV`` if it is `ssh` or `proxy ssh` in a shape typer
    would accept the same way; else None."""
    debug = False
    while argv and argv[0] in GLOBAL_FLAGS:
        debug, argv = argv[0] == "--debug", argv[1:]
    if argv[:1] == ["ssh"]:
        # allow_interspersed_args=False: options up to LOGIN@NODE, as click reads them
        # (getopt's way); what follows is for ssh() to read
        try:
            opts, rest = read_options(argv[1:])
        except BadParameter:
            return None
        login_node = split_target(rest[0]) if rest and not rest[0].startswith("-") else None
        if login_node is None:
            return None
        return Invocation("ssh", login_node, rest[1:], opts, debug)
    if argv[:2] == ["proxy", "ssh"]:
        split = _options(argv[2:], PROXY_SSH_OPTIONS)
        if split is None or len(split[1]) != 1:
            return None
        found, (target,) = split
        login_node = split_target(target)
        if login_node is None:
            return None
        return Invocation("proxy ssh", login_node,
                          opts=SshOptions(cluster=str(found.get("--cluster", ""))), debug=debug)
    return None


def try_fast(argv: list[str]) -> None:
    """Run ``argv`` here and exit if :func:`parse` recognises it; else return (typer's turn).

    The exit skips the interpreter's teardown (tens of milliseconds of freeing
    modules), after flushing what was written.
    """
    invocation = parse(argv)
    if invocation is None:
        return
    setup_logging(invocation.debug)
    try:
        code = invocation.run()
    except SystemExit as exc:  # die(): its line is already on stderr
        code = exc.code if isinstance(exc.code, int) else 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
