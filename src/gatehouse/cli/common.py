"""What the three CLIs share: one-line errors, plain help, tables, JSON output."""

from __future__ import annotations

import json
import logging
import os
import shutil
import sys
from collections.abc import Coroutine, Sequence
from enum import StrEnum
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import uvloop

from gatehouse._sys.fdio import write_all
from gatehouse._sys.heap import keep_freed_memory
from gatehouse.errors import GatehouseError

if TYPE_CHECKING:  # typer and rich load only where used: gsh's fast path (connect.py) needs neither
    import typer

__all__ = ["Format", "ResourceFormat", "die", "format_table", "new_app", "print_json",
           "print_table", "run_async", "setup_logging", "write_stdout"]

T = TypeVar("T")


class Format(StrEnum):
    """Listings and reports (nodes, events, status): a table, or JSON for programs."""

    text = "text"
    json = "json"


class ResourceFormat(StrEnum):
    """Resources: also YAML, the form `gatectl create` reads back."""

    text = "text"
    yaml = "yaml"
    json = "json"


def new_app(help: str, **settings: Any) -> typer.Typer:
    """A command group with plain help and usage errors: no colours, boxes or ``<bool>``
    types, the same whether stdout is a terminal, a pipe or a file (so NO_COLOR has
    nothing to turn off)."""
    import typer

    return typer.Typer(help=help, rich_markup_mode=None, add_completion=False,
                       pretty_exceptions_enable=False, no_args_is_help=True, **settings)


_debug = {"on": False}


def setup_logging(debug: bool, level: int = logging.WARNING) -> None:
    """--debug: verbose logs and full tracebacks instead of one-line errors."""
    _debug["on"] = debug
    logging.basicConfig(
        level=logging.DEBUG if debug else level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if not debug:
        logging.getLogger("asyncssh").setLevel(logging.WARNING)
        logging.getLogger("aiohttp.access").setLevel(logging.WARNING)


def die(message: str, code: int = 1) -> NoReturn:
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(code)


def run_async(coro: Coroutine[Any, Any, T], *, error_code: int = 1) -> T:
    """Run a command's coroutine on uvloop; a Gatehouse error becomes one line on stderr.

    uvloop, not asyncio's own loop: its transports move bytes and TLS records
    without per-call Python overhead (the proxy's and the node's hot paths), and it
    does not touch a 256 KiB read buffer per TLS connection (idle tunnels). Freed
    heap memory is kept for reuse (see gatehouse._sys.heap).
    """
    keep_freed_memory()
    try:
        return uvloop.run(coro)
    except (GatehouseError, BaseExceptionGroup) as exc:
        error = _gatehouse_error(exc)
        if error is None or _debug["on"]:
            raise
        die(str(error), error_code)
    except KeyboardInterrupt:
        raise SystemExit(130) from None


def _gatehouse_error(exc: BaseException) -> GatehouseError | None:
    """The Gatehouse error itself, or the first one inside a task group's exception group."""
    if isinstance(exc, GatehouseError):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            found = _gatehouse_error(inner)
            if found is not None:
                return found
    return None


def write_stdout(data: str | bytes) -> None:
    """All of ``data`` to stdout (text as UTF-8), after whatever was printed before it."""
    sys.stdout.flush()
    write_all(sys.stdout.fileno(), data.encode() if isinstance(data, str) else data)


def print_json(data: object) -> None:
    write_stdout(json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")


def print_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    """A table with every cell whole (ids are copied from here): on a terminal, long
    cells wrap between words to fit its width; elsewhere, one line per row. Headers are
    bold on a terminal unless NO_COLOR is set (https://no-color.org)."""
    cells = [[_printable(str(c)) for c in row] for row in rows]
    if sys.stdout.isatty():
        write_stdout(format_table(headers, cells, width=shutil.get_terminal_size().columns,
                                  bold=not os.environ.get("NO_COLOR")))
    else:
        write_stdout(format_table(headers, cells))


def format_table(headers: Sequence[str], rows: Sequence[Sequence[str]], *,
                 width: int | None = None, bold: bool = False) -> str:
    """Columns two spaces apart, every word whole. Given a ``width``, the widest columns
    wrap between words until the table fits it, or until each is down to its longest
    word (then the table is wider than ``width``: a word is never cut)."""
    from rich.cells import cell_len

    table = [list(headers), *(list(row) for row in rows)]
    widest = [max(cell_len(row[i]) for row in table) for i in range(len(headers))]
    widths = list(widest)
    if width is not None:
        longest_word = [max(cell_len(word) for row in table for word in [*row[i].split(), ""])
                         for i in range(len(headers))]
        room = width - 2 * (len(widths) - 1)
        while sum(widths) > room:
            shrinkable = [i for i, w in enumerate(widths) if w > longest_word[i]]
            if not shrinkable:
                break
            i = max(shrinkable, key=lambda j: widths[j])
            widths[i] -= 1
    out = []
    for number, row in enumerate(table):
        wrapped = [_wrap(cell, w) if cell_len(cell) > w else [cell]
                   for cell, w in zip(row, widths, strict=True)]
        for line in range(max(len(lines) for lines in wrapped)):
            parts = []
            for lines, w in zip(wrapped, widths, strict=True):
                text = lines[line] if line < len(lines) else ""
                parts.append(text + " " * (w - cell_len(text)))
            text = "  ".join(parts).rstrip()
            out.append(f"\x1b[1m{text}\x1b[0m" if bold and number == 0 else text)
    return "".join(line + "\n" for line in out)


def _wrap(text: str, width: int) -> list[str]:
    import textwrap

    return textwrap.wrap(text, width, break_long_words=False, break_on_hyphens=False) or [""]


def _printable(text: str) -> str:
    """``text`` with control and other unprintable characters escaped: a cell may hold
    what a user typed (a command), which must not drive the reader's terminal."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii")
                   for c in text)
