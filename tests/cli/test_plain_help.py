"""Every command's help and usage errors are plain text: no boxes, colours or
``--no-FLAG`` twins of on/off flags (issue 17, item 22), whatever the terminal."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent


@pytest.mark.parametrize("argv", [
    ["gsh", "--help"], ["gsh", "login", "--help"], ["gsh", "ssh", "--help"],
    ["gsh", "recordings", "--help"], ["gatehouse", "--help"], ["gatehouse", "start", "--help"],
])
def test_help_is_plain(argv: list[str]) -> None:
    res = subprocess.run([str(BIN / argv[0]), *argv[1:]], capture_output=True, text=True,
                         timeout=30, env={"PATH": "/usr/bin:/bin", "TERM": "xterm-256color"})
    assert res.returncode == 0, res
    assert res.stdout.startswith(f"Usage: {argv[0]}"), res.stdout
    for noise in ("\x1b[", "╭", "│", "<bool>", "--no-"):
        assert noise not in res.stdout, (noise, res.stdout)


@pytest.mark.parametrize("argv", [["gsh", "nosuch"], ["gatehouse", "start", "--nosuch"]])
def test_a_usage_error_is_plain(argv: list[str]) -> None:
    res = subprocess.run([str(BIN / argv[0]), *argv[1:]], capture_output=True, text=True,
                         timeout=30, env={"PATH": "/usr/bin:/bin"})
    assert res.returncode == 2, res
    assert "╭" not in res.stderr and "\x1b[" not in res.stderr and "Error" in res.stderr, res
