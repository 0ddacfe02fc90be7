"""`bench/run --rows`: which rows a run measures (a pure parse, and the one line a
wrong name gets from the real command, before anything starts)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from bench.main import ROWS, parse_rows

REPO = Path(__file__).resolve().parents[2]
KNOWN = ", ".join(ROWS)


def test_rows_are_taken_in_the_runs_order_once_each() -> None:
    assert parse_rows("issuance,stream, load,stream") == ["stream", "load", "issuance"]
    assert parse_rows(",".join(ROWS)) == list(ROWS)


@pytest.mark.parametrize(("text", "what"), [
    ("stream,streams", "unknown row streams"),
    ("bogus,stream,cert_issuance", "unknown rows bogus, cert_issuance"),
    ("", "no row named"),
    (" , ", "no row named"),
])
def test_an_unknown_or_empty_row_list_is_refused_naming_the_known_rows(text: str,
                                                                        what: str) -> None:
    with pytest.raises(ValueError) as exc:
        parse_rows(text)
    assert str(exc.value) == f"--rows: {what}: the rows are {KNOWN}"


def test_bench_run_refuses_an_unknown_row_in_one_line() -> None:
    done = subprocess.run([str(REPO / "bench" / "run"), "--rows=stream,nope"],
                          capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == f"bench: --rows: unknown row nope: the rows are {KNOWN}\n"


def test_help_names_the_rows() -> None:
    done = subprocess.run([str(REPO / "bench" / "run"), "--help"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0
    assert all(row in " ".join(done.stdout.split()) for row in ROWS)
