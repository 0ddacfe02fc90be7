"""``gatectl backend copy``: move a stopped cluster to another backend.

The one gatectl command that opens the cluster's storage itself (it needs no running
auth, and refuses while the cluster runs); see docs/backend-copy.md.
"""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer

from gatehouse.cli.common import Format, new_app, print_json, run_async
from gatehouse.clock import SystemClock

__all__ = ["backend_app"]

backend_app = new_app("Storage of a stopped cluster (the one place gatectl opens it).")


@backend_app.command("copy")
def copy(
    source: Annotated[str, typer.Option("--from", help="Where the stopped cluster is: "
                                        "sqlite:DATA_DIR, postgres:postgresql://..., "
                                        "etcd:URL[,URL]?prefix=/gatehouse/CLUSTER[&...].")],
    destination: Annotated[str, typer.Option("--to", help="Where to copy it (same forms).")],
    force: Annotated[bool, typer.Option("--force", help="Remove what the destination "
                                        "holds first (else a non-empty one is refused).")
                     ] = False,
    fmt: Annotated[Format, typer.Option("--format")] = Format.text,
) -> None:
    """Copy a stopped cluster (CAs with their keys, users, roles, tokens, trust, audit log,
    recordings) between backends, expiries kept."""
    from gatehouse.process.backend_copy import copy_between

    with _Progress() as progress:
        done = run_async(copy_between(source, destination, SystemClock(), force=force,
                                      progress=progress.advance))
    if fmt == Format.json:
        print_json({"from": source, "to": destination, "items": done.items,
                    "audit_items": done.audit_items, "recordings": done.recordings,
                    "recording_bytes": done.recording_bytes})
    else:
        print(f"copied {done.items} items, {done.audit_items} audit log items and "
              f"{done.recordings} recordings ({done.recording_bytes} bytes) "
              f"from {source} to {destination}")


class _Progress:
    """Counts per step on stderr while copying, when stderr is a terminal."""

    def __init__(self) -> None:
        self._bar: Any = None
        self._tasks: dict[str, Any] = {}

    def __enter__(self) -> _Progress:
        if sys.stderr.isatty():
            from rich.console import Console
            from rich.progress import Progress, SpinnerColumn, TextColumn

            self._bar = Progress(SpinnerColumn(), TextColumn("{task.description}"),
                                 TextColumn("{task.completed:,.0f}"),
                                 console=Console(stderr=True), transient=True)
            self._bar.start()
        return self

    def advance(self, what: str, n: int) -> None:
        if self._bar is None:
            return
        if what not in self._tasks:
            self._tasks[what] = self._bar.add_task(what, total=None)
        self._bar.advance(self._tasks[what], n)

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()
