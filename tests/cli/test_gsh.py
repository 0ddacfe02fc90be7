"""gsh's own output code (its commands run for real in tests/integration)."""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gatehouse.cli.common import print_json
from gatehouse.cli.gsh import _print_nodes_json

# What a node listing holds: objects, arrays, text, integers, booleans and null.
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


def printed(how: Callable[[Any], None], data: Any) -> str:
    """What ``how`` writes to stdout (a real file: the printers write to its descriptor)."""
    with tempfile.TemporaryFile("w+", encoding="utf-8") as out:
        with contextlib.redirect_stdout(out):
            how(data)
        out.seek(0)
        return out.read()


@given(data=st.lists(JSON, max_size=4))
def test_ls_json_prints_what_print_json_prints(data: list[Any]) -> None:
    assert printed(_print_nodes_json, data) == printed(print_json, data)


@pytest.mark.parametrize("text", ["plain", "é and \U0001f600", "\x7f", "\x00\x1f\n\t\"\\/",
                                  "\u2028", "\ud800"])
def test_ls_json_escapes_as_json_dumps_does(text: str) -> None:
    nodes = [{"kind": "node", "metadata": {"labels": {text: text}}, "status": None}, {}, []]
    assert printed(_print_nodes_json, nodes) == printed(print_json, nodes)
