"""Asking a person for a password on their terminal, or saying in one line why not."""

from __future__ import annotations

import getpass

from gatehouse.cli.common import die

__all__ = ["ask_password"]


def ask_password(prompt: str) -> str:
    """The password typed at the terminal (not echoed). Without a terminal, one line that
    says to give it on stdin: getpass would warn that it may echo it, then read stdin."""
    try:
        with open("/dev/tty", "rb"):
            pass
    except OSError:
        die("no terminal to ask for the password on: give it on stdin with --password-stdin")
    try:
        return getpass.getpass(prompt)
    except EOFError:
        die("no password given (end of input)")
