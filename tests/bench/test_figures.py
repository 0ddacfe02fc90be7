"""The benchmark's figure arithmetic: ratios pair the runs of one repeat, per-process
CPU medians, and the table and JSON carry the CPU per GiB."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
from bench.figures import (
    REFERENCE,
    absolute_figure,
    counted,
    median_by_key,
    missing_figure,
    paired_ratios,
    reference_figure,
    table,
    write_json,
)


def test_each_run_is_paired_with_the_run_of_its_own_repeat() -> None:
    # Repeat 1 ran fast recorded, repeat 2 fast unrecorded: pairing the sorted lists
    # (100/100, 300/300) showed two ratios of 1.0, as if the runs had agreed.
    assert paired_ratios([300.0, 100.0], [100.0, 300.0]) == [3.0, pytest.approx(1 / 3)]
    assert paired_ratios([], []) == []


def test_pairs_need_as_many_runs_on_each_side() -> None:
    with pytest.raises(ValueError, match="3 runs against 2"):
        paired_ratios([1.0, 2.0, 3.0], [1.0, 2.0])


def test_cpu_medians_per_process_over_the_runs_that_have_it() -> None:
    runs = [{"gsh": 1.0, "node": 3.0}, {"gsh": 2.0, "node": 1.0},
            {"gsh": 9.0, "node": 2.0, "sshd": 4.0}]
    assert median_by_key(runs) == {"gsh": 2.0, "node": 2.0, "sshd": 4.0}


def test_the_cpu_per_gib_is_printed_and_written(tmp_path: Path) -> None:
    figure = absolute_figure("stream_recording", "on vs off", [0.9, 1.0], "x", limit=0.9,
                             better="higher")
    figure.cpu_per_gib = {"gsh": 1.62, "root auth+proxy": 1.4}
    assert table([figure]).splitlines()[-1] == (
        "CPU s per GiB, stream_recording: gsh 1.62, root auth+proxy 1.40")
    write_json(tmp_path / "run.json", "quick", [figure])
    written = json.loads((tmp_path / "run.json").read_text())["figures"][0]
    assert written["cpu_per_gib"] == {"gsh": 1.62, "root auth+proxy": 1.4}


def test_a_reference_row_has_no_target_and_is_not_counted() -> None:
    floor = reference_figure("stream_c_relays", "C relays", [230.0, 220.0, 240.0],
                             [300.0, 290.0, 310.0], "MB/s", note="the same hops in C")
    judged = absolute_figure("stream_recording", "on vs off", [0.9], "x", limit=0.95,
                             better="higher")
    assert (floor.value, floor.openssh, floor.target) == (230.0, 300.0, REFERENCE)
    assert floor.ratio == pytest.approx(230 / 300)
    assert counted([floor, judged]) == (0, 1)
    assert counted([floor, replace(judged, met=True)]) == (1, 1)
    row = next(line for line in table([floor, judged]).splitlines() if "C relays" in line)
    assert row.split()[-1] == "—"
    missing = missing_figure("stream_c_relays", "C relays", "MB/s", REFERENCE, "broke")
    assert missing.reference and counted([missing]) == (0, 0)
