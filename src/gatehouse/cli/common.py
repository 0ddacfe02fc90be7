"""What the three CLIs share: one-line errors, tables, JSON output."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Coroutine, Sequence
from enum import StrEnum
from typing import Any, NoReturn, TypeVar

import uvloop

from gatehouse._sys.fdio import write_all
from gatehouse._sys.heap import keep_freed_memory
from gatehouse.errors import GatehouseError

__all__ = ["Format", "die", "print_json", "print_table", "run_async", "setup_logging",
           "write_stdout"]

T = TypeVar("T")


class Format(StrEnum):
    text = "text"
    json = "json"
    yaml = "yaml"


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
    from rich.console import Console
    from rich.table import Table

    table = Table(box=None, pad_edge=False, header_style="bold")
    for h in headers:
        table.add_column(h)
    for row in rows:
        table.add_row(*(str(c) for c in row))
    console = Console(soft_wrap=True)
    with console.capture() as captured:
        console.print(table)
    write_stdout(captured.get())
