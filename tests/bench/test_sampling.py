"""The stream rows count a command's helpers that outlive it (ssh's ProxyCommand, which
ssh signals but does not wait for): before, `ssh + gsh proxy` counted ssh alone."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

# A command that prints a line and soon exits, leaving a child behind that burns
# 0.5 s of CPU with the pipe still open, as ssh leaves `gsh proxy ssh`.
MEASURE = """
import contextlib
import sys
from bench.sampling import adopting_orphans
from bench.stream import stream_rate
burn = "import time; t = time.process_time()\\nwhile time.process_time() - t < 0.5: pass"
argv = ["sh", "-c", f"{sys.executable} -c '{burn}' & echo x; sleep 0.2"]
with adopting_orphans() if sys.argv[1] == "adopt" else contextlib.nullcontext():
    print(stream_rate(argv, 2)[1])
"""


def _cpu(mode: str) -> float:
    done = subprocess.run([sys.executable, "-c", MEASURE, mode], cwd=REPO,
                          capture_output=True, text=True, timeout=60, check=True)
    return float(done.stdout)


def test_a_helper_that_outlives_the_command_counts_with_it() -> None:
    assert _cpu("adopt") >= 0.45


def test_without_adopting_the_helper_is_lost() -> None:
    assert _cpu("plain") < 0.2  # what the figure missed
