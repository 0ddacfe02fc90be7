"""The daemon raises its open-file limit to the hard limit (a process of its own here,
so that the test's own limits stay as they were)."""

from __future__ import annotations

import resource
import subprocess
import sys

import pytest

SCRIPT = """
import resource
from gatehouse._sys.fdlimit import raise_open_file_limit
_, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, ({soft}, hard))
print(raise_open_file_limit(), *resource.getrlimit(resource.RLIMIT_NOFILE))
"""


def test_the_soft_limit_rises_to_the_hard_one() -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard <= 256:
        pytest.fail(f"this machine's hard open-file limit ({hard}) leaves nothing to test")
    out = subprocess.run([sys.executable, "-c", SCRIPT.format(soft=256)], check=True,
                         capture_output=True, text=True, timeout=30).stdout.split()
    assert [int(n) for n in out] == [hard, hard, hard]
