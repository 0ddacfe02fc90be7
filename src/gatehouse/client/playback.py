"""Replaying a recording in a terminal, with its original timing.

Keys while playing: space pauses and resumes, ``.`` steps one frame while paused,
``→`` (or ``l``) skips ten seconds ahead, ``+``/``-`` change the speed, ``q`` quits.
Without a terminal, callers write the output bytes at once instead.
"""

from __future__ import annotations

import contextlib
import os
import select
import sys
import termios
import time
import tty
from collections.abc import Iterator

from gatehouse._sys.fdio import write_all
from gatehouse.wire.recording import Recording

__all__ = ["play"]

SKIP = 10.0


@contextlib.contextmanager
def _keys(fd: int) -> Iterator[None]:
    saved = termios.tcgetattr(fd)
    try:
        tty.setcbreak(fd, termios.TCSADRAIN)
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def _read_key(fd: int, timeout: float) -> str:
    ready, _, _ = select.select([fd], [], [], max(timeout, 0))
    if not ready:
        return ""
    key = os.read(fd, 8).decode(errors="replace")
    return "right" if key in ("\x1b[C", "l") else key


def play(rec: Recording, speed: float = 1.0) -> None:
    """Write the recording's output to the terminal at its pace (``speed`` times faster)."""
    keys = sys.stdin.fileno() if sys.stdin.isatty() else -1
    ctx = _keys(keys) if keys >= 0 else contextlib.nullcontext()
    frames = [f for f in rec.frames if f.type == "o"]
    with ctx:
        clock = 0.0  # position in the recording, seconds
        last = time.monotonic()
        paused = False
        i = 0
        while i < len(frames):
            frame = frames[i]
            wait = 0.0 if paused else (frame.t - clock) / speed
            key = _read_key(keys, wait if not paused else 0.2) if keys >= 0 else ""
            if keys < 0 and wait > 0:
                time.sleep(wait)
            now = time.monotonic()
            if not paused:
                clock += (now - last) * speed
            last = now
            if key == "q":
                break
            if key == " ":
                paused = not paused
                continue
            if key in ("+", "="):
                speed *= 2
            elif key == "-":
                speed /= 2
            elif key == "right":
                clock += SKIP
            if key == "." and paused:
                clock = frame.t
            if clock + 1e-9 >= frame.t or (key == "." and paused):
                write_all(sys.stdout.fileno(), frame.data)
                i += 1
