"""`gsh scp`'s arguments, read as scp(1) reads them."""

from __future__ import annotations

import pytest

from gatehouse.client.copyspec import CopySpec, parse_copy
from gatehouse.errors import BadParameter


@pytest.mark.parametrize(("args", "spec"), [
    (["a.txt", "root@db:/tmp/"], CopySpec(True, "root", "db", ("a.txt",), "/tmp/")),
    (["a", "./b@c:d", "me@db:"], CopySpec(True, "me", "db", ("a", "./b@c:d"), ".")),
    (["root@db:x", "root@db:/etc/y z", "."],
     CopySpec(False, "root", "db", ("x", "/etc/y z"), ".")),
    (["root@db:", "home"], CopySpec(False, "root", "db", (".",), "home")),
])
def test_copies(args: list[str], spec: CopySpec) -> None:
    assert parse_copy(args) == spec


@pytest.mark.parametrize(("args", "message"), [
    (["only"], "give at least one source and a destination: SRC... DST"),
    (["a", "b"], "'a' is local and so is 'b': one side must be LOGIN@NODE:PATH"),
    (["root@db:a", "b", "c"], "'b' is local and so is 'c'"),
    (["root@db:a", "root@web:b"], "copies between two nodes are not supported"),
    (["root@db:a", "root@web:b", "."], "the sources are on different nodes"),
    (["root@db:a", "bob@db:b", "."], "the sources are on different nodes"),
    (["", "root@db:"], "an empty path"),
])
def test_what_is_not_a_copy(args: list[str], message: str) -> None:
    with pytest.raises(BadParameter, match="^" + message.replace(".", r"\.")):
        parse_copy(args)
