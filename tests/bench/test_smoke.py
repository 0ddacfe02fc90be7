"""CI's smoke check of a benchmark run (`python -m bench.smoke FILE`): every row must be
there and measured; a run whose figures are null fails it (before, it passed with every
figure null). Files are written by the benchmark's own writer."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace
from pathlib import Path

from bench.figures import Figure, absolute_figure, missing_figure, write_json
from bench.main import ROWS
from bench.smoke import problems

REPO = Path(__file__).resolve().parents[2]
IDS = [row[0] for rows in ROWS.values() for row in rows]


def _measured() -> list[Figure]:
    """Every row measured (no OpenSSH counterpart: openssh and ratio are null)."""
    return [absolute_figure(id, name, [1.0, 2.0, 3.0], unit, limit=5, better="lower",
                            target=target)
            for id, name, unit, target in (row for rows in ROWS.values() for row in rows)]


def _unmeasured() -> list[Figure]:
    return [missing_figure(id, name, unit, target, f"not measured: {id} broke")
            for id, name, unit, target in (row for rows in ROWS.values() for row in rows)]


def _smoke(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "bench.smoke", str(path)], cwd=REPO,
                          capture_output=True, text=True, timeout=60)


def test_a_run_that_measured_every_row_passes(tmp_path: Path) -> None:
    path = tmp_path / "run.json"
    write_json(path, "quick", _measured())
    done = _smoke(path)
    assert (done.returncode, done.stderr) == (0, ""), done
    assert f"holds all {len(IDS)} rows" in done.stdout


def test_a_run_with_every_figure_null_fails_naming_each_row(tmp_path: Path) -> None:
    path = tmp_path / "run.json"
    write_json(path, "quick", _unmeasured())
    done = _smoke(path)
    assert done.returncode == 1, done
    assert done.stderr.splitlines() == [
        f"bench smoke: row {id} was not measured: not measured: {id} broke" for id in IDS]


def test_one_unmeasured_or_missing_row_fails(tmp_path: Path) -> None:
    figures = _measured()
    figures[1] = _unmeasured()[1]
    del figures[-1]
    path = tmp_path / "run.json"
    write_json(path, "full", figures)
    assert problems(path) == [f"row {IDS[1]} was not measured: not measured: {IDS[1]} broke",
                              f"row {IDS[-1]} is missing"]


def test_a_measured_row_needs_min_and_max(tmp_path: Path) -> None:
    figures = _measured()
    figures[0] = replace(figures[0], min=None)
    figures[2] = replace(figures[2], openssh=2.0, ratio=1.0)  # a counterpart is fine too
    path = tmp_path / "run.json"
    write_json(path, "quick", figures)
    assert problems(path) == [f"row {IDS[0]}: field min is None"]
