"""What `gsh scp SRC... DST` copies, read as scp(1) and `tsh scp` read it (pure).

An argument of the form ``LOGIN@NODE:PATH`` is on the node (an empty PATH is the
login's home directory); any other is local (write ``./a@b:c`` for a local file with
such a name). Either every source is on one node and the destination is local, or
the sources are local and the destination is on a node.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from gatehouse.errors import BadParameter

__all__ = ["CopySpec", "parse_copy"]

_REMOTE = re.compile(r"([^@/:]+)@([^@/:]+):(.*)", re.DOTALL)


@dataclass(frozen=True)
class CopySpec:
    """``upload``: local ``sources`` to ``target`` on the node; else the node's
    ``sources`` to the local ``target``."""

    upload: bool
    login: str
    node: str
    sources: tuple[str, ...]
    target: str


def _remote(arg: str) -> tuple[str, str, str] | None:
    found = _REMOTE.fullmatch(arg)
    if found is None:
        return None
    login, node, path = found.groups()
    return login, node, path or "."


def parse_copy(args: Sequence[str]) -> CopySpec:
    """The copy ``SRC... DST`` asks for; BadParameter, one line, when it is not one."""
    if len(args) < 2:
        raise BadParameter("give at least one source and a destination: SRC... DST")
    *sources, target = args
    if any(not arg for arg in args):
        raise BadParameter("an empty path: give a file name, or LOGIN@NODE: for a home")
    remote_target = _remote(target)
    remote_sources = [_remote(src) for src in sources]
    if remote_target is not None:
        if any(r is not None for r in remote_sources):
            raise BadParameter("copies between two nodes are not supported: the sources or "
                               "the destination must be local")
        login, node, path = remote_target
        return CopySpec(True, login, node, tuple(sources), path)
    if any(r is None for r in remote_sources):
        local = next(src for src, r in zip(sources, remote_sources, strict=True) if r is None)
        raise BadParameter(f"{local!r} is local and so is {target!r}: one side must be "
                           "LOGIN@NODE:PATH (use cp for local copies)")
    nodes = {(r[0], r[1]) for r in remote_sources if r is not None}
    if len(nodes) > 1:
        raise BadParameter("the sources are on different nodes: copy from one LOGIN@NODE "
                           "at a time")
    ((login, node),) = nodes
    return CopySpec(False, login, node, tuple(r[2] for r in remote_sources if r is not None),
                    target)
