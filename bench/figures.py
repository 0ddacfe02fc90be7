"""One figure per row of issue 5's table: median of repeats, min, max, the OpenSSH
counterpart, the ratio and whether the target is met (and for the stream rows,
each process's CPU seconds per GiB); printed as a table and written as JSON
(``{"mode": ..., "figures": [...]}``)."""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

Better = Literal["lower", "higher"]


@dataclass
class Figure:
    id: str  # stable key (for scripts); ``name`` is for people
    name: str
    value: float | None
    min: float | None
    max: float | None
    unit: str
    openssh: float | None
    ratio: float | None  # Gatehouse / OpenSSH
    target: str
    met: bool
    note: str = ""
    # A reference row (what a peer built differently reaches): no target, never counted.
    reference: bool = False
    # The stream rows: CPU seconds per GiB streamed, by process (median of repeats).
    cpu_per_gib: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Stats:
    median: float
    min: float
    max: float

    @classmethod
    def of(cls, samples: Sequence[float]) -> Stats:
        if not samples:
            raise ValueError("no samples")
        return cls(statistics.median(samples), min(samples), max(samples))


def paired_ratios(ours: Sequence[float], theirs: Sequence[float]) -> list[float]:
    """ours[i] / theirs[i]: each run against the one of the same repeat (not sorted
    lists paired by rank, which hides how far a repeat's two runs were apart)."""
    if len(ours) != len(theirs):
        raise ValueError(f"{len(ours)} runs against {len(theirs)}: pairs need as many")
    return [a / b for a, b in zip(ours, theirs, strict=True)]


def median_by_key(samples: Sequence[dict[str, float]]) -> dict[str, float]:
    """Per key, the median of the samples that have it (in first-seen key order)."""
    keys = list(dict.fromkeys(k for sample in samples for k in sample))
    return {k: statistics.median(s[k] for s in samples if k in s) for k in keys}


def ratio_figure(id: str, name: str, ours: Sequence[float], theirs: Sequence[float], unit: str,
                 *, limit: float, better: Better, note: str = "",
                 peer: str = "OpenSSH") -> Figure:
    """A figure judged by Gatehouse / its peer (OpenSSH, unless ``peer`` names another,
    measured in the same run) against ``limit`` (≤ for lower-is-better)."""
    us, them = Stats.of(ours), Stats.of(theirs)
    ratio = us.median / them.median if them.median else math.inf
    met = ratio <= limit if better == "lower" else ratio >= limit
    sign = "≤" if better == "lower" else "≥"
    return Figure(id, name, us.median, us.min, us.max, unit, them.median, ratio,
                  f"{sign} {limit:g}x {peer}", met, note)


def absolute_figure(id: str, name: str, samples: Sequence[float], unit: str, *, limit: float,
                    better: Better, openssh: Sequence[float] | None = None,
                    target: str = "", note: str = "") -> Figure:
    """A figure judged against an absolute ``limit`` (the median is judged)."""
    us = Stats.of(samples)
    them = Stats.of(openssh).median if openssh else None
    ratio = us.median / them if them else None
    met = us.median <= limit if better == "lower" else us.median >= limit
    sign = "≤" if better == "lower" else "≥"
    return Figure(id, name, us.median, us.min, us.max, unit, them, ratio,
                  target or f"{sign} {limit:g} {unit}", met, note)


REFERENCE = "reference, no target"


def reference_figure(id: str, name: str, ours: Sequence[float], theirs: Sequence[float],
                     unit: str, *, note: str) -> Figure:
    """A row that bounds others rather than being judged: its median over OpenSSH's."""
    us, them = Stats.of(ours), Stats.of(theirs)
    return Figure(id, name, us.median, us.min, us.max, unit, them.median,
                  us.median / them.median if them.median else math.inf, REFERENCE, False,
                  note, reference=True)


def missing_figure(id: str, name: str, unit: str, target: str, note: str) -> Figure:
    """A row that could not be measured: no value, not met, and why."""
    return Figure(id, name, None, None, None, unit, None, None, target, False, note,
                  reference=target == REFERENCE)


def counted(figures: Sequence[Figure]) -> tuple[int, int]:
    """(targets met, targets): reference rows have none."""
    judged = [f for f in figures if not f.reference]
    return sum(f.met for f in judged), len(judged)


def _num(x: float | None) -> str:
    if x is None:
        return "—"
    if x == 0 or abs(x) >= 100:
        return f"{x:,.0f}"
    if abs(x) >= 10:
        return f"{x:.1f}"
    if abs(x) >= 0.01:
        return f"{x:.2f}"
    return f"{x:.2g}"


def table(figures: Sequence[Figure]) -> str:
    """A plain-text table (monospace), the notes numbered under it, then the CPU per GiB."""
    head = ["figure", "value", "min-max", "unit", "OpenSSH", "ratio", "target", "met"]
    rows = []
    notes = []
    for f in figures:
        name = f.name
        if f.note:
            notes.append(f.note)
            name += f" [{len(notes)}]"
        rows.append([
            name, _num(f.value),
            "—" if f.min is None else f"{_num(f.min)}-{_num(f.max)}",
            f.unit, _num(f.openssh), "—" if f.ratio is None else f"{f.ratio:.2f}x",
            f.target, "—" if f.reference else "yes" if f.met else "NO",
        ])
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
             for r in [head, ["-" * w for w in widths], *rows]]
    lines += [""] + [f"[{i}] {n}" for i, n in enumerate(notes, 1)]
    for f in figures:
        if f.cpu_per_gib:
            lines.append(f"CPU s per GiB, {f.id}: "
                         + ", ".join(f"{k} {v:.2f}" for k, v in f.cpu_per_gib.items()))
    return "\n".join(lines)


def write_json(path: Path, mode: str, figures: Sequence[Figure]) -> None:
    def clean(f: Figure) -> dict[str, object]:
        out = asdict(f)
        for key, val in out.items():  # JSON has no NaN or infinity: null instead
            if isinstance(val, float) and not math.isfinite(val):
                out[key] = None
        return out

    path.write_text(json.dumps({"mode": mode, "figures": [clean(f) for f in figures]},
                               indent=2) + "\n")
