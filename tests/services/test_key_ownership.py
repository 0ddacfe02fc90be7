"""Only gatehouse.services (and the backends) know backend key layouts: no other module
writes a key literal (``b"/users/"``, ``f"/hosts/{id}".encode()``) or builds an Item.

The import contract in pyproject.toml keeps gatehouse.backend out of the auth; this
test catches what an import check cannot (a key built from a string anywhere)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "src" / "gatehouse"
OWNERS = ("services", "backend")


def _key_literal(node: ast.AST) -> bool:
    """Whether node is text that starts with "/" (a literal, or an f-string's start)."""
    if isinstance(node, ast.JoinedStr) and node.values:
        node = node.values[0]
    return isinstance(node, ast.Constant) and isinstance(node.value, str) \
        and node.value.startswith("/")


def key_building(source: str) -> list[tuple[int, str]]:
    """(line, what) for every place ``source`` builds a backend key or an Item."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Constant) and isinstance(node.value, bytes) \
                and node.value.startswith(b"/"):
            found.append((node.lineno, f"key literal {node.value!r}"))
        elif isinstance(node, ast.Call):
            func = node.func
            name = func.id if isinstance(func, ast.Name) else \
                func.attr if isinstance(func, ast.Attribute) else ""
            if name == "Item":
                found.append((node.lineno, "Item(...)"))
            elif name == "encode" and isinstance(func, ast.Attribute) \
                    and _key_literal(func.value):
                found.append((node.lineno, "a key encoded from text starting with /"))
    return found


def test_the_check_finds_each_way_of_building_a_key() -> None:
    source = ('a = b"/users/alice"\n'
              'b = Item(key=k, value=v)\n'
              'c = backend.Item(k, v)\n'
              'd = f"/hosts/{host_id}".encode()\n'
              'e = "/cluster_name".encode()\n'
              'f = "users".encode(); g = b"users"; h = f"{x}/y".encode()\n')
    assert [line for line, _ in key_building(source)] == [1, 2, 3, 4, 5]


def test_no_module_outside_the_services_builds_a_key() -> None:
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE)
        if relative.parts[0] in OWNERS:
            continue
        offenders += [f"{relative}:{line}: {what}"
                      for line, what in key_building(path.read_text())]
    assert not offenders, "backend keys built outside gatehouse.services:\n" + \
        "\n".join(offenders)
