"""The `gsh` entry point: the fast path (connect.py) when it applies, else typer (gsh.py).

Apart from both so that neither imports the other; gsh.py loads only when needed.
"""

from __future__ import annotations

import sys

from gatehouse.cli.connect import try_fast

__all__ = ["main"]


def main() -> None:
    try_fast(sys.argv[1:])
    from gatehouse.cli.gsh import app

    app()
