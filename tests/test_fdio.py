"""write_all: every byte reaches a slow pipe reader, even when signals cut writes short."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
import time

from gatehouse._sys.fdio import write_all

SIZE = 8 << 20


def _slow_drain(fd: int, into: bytearray) -> None:
    while chunk := os.read(fd, 65536):
        into += chunk
        time.sleep(0.0005)


def test_write_all_survives_interrupted_writes() -> None:
    """A timer signal every millisecond makes write(2) on a full pipe return early."""
    import signal

    data = os.urandom(SIZE)
    r, w = os.pipe()
    got = bytearray()
    reader = threading.Thread(target=_slow_drain, args=(r, got))
    reader.start()
    old = signal.signal(signal.SIGALRM, lambda *_: None)
    signal.setitimer(signal.ITIMER_REAL, 0.001, 0.001)
    try:
        write_all(w, data)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0, 0)
        signal.signal(signal.SIGALRM, old)
        os.close(w)
        reader.join(timeout=30)
        os.close(r)
    assert bytes(got) == data


def test_ls_json_output_is_whole_when_python_is_unbuffered() -> None:
    """`gsh ls --format=json`'s printer under PYTHONUNBUFFERED (a stdout that does not
    retry a partial write) and a signal storm, read by a slow reader: the JSON parses
    and is all there (it used to be cut at a multiple of 64 KiB, exit status 0)."""
    script = textwrap.dedent("""
        import signal
        from gatehouse.cli.gsh import _print_nodes_json
        signal.signal(signal.SIGALRM, lambda *_: None)
        signal.setitimer(signal.ITIMER_REAL, 0.001, 0.001)
        _print_nodes_json([{"n": i, "pad": "x" * 200} for i in range(40000)])
        signal.setitimer(signal.ITIMER_REAL, 0, 0)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert proc.stdout is not None
    got = bytearray()
    _slow_drain(proc.stdout.fileno(), got)
    assert proc.wait(timeout=60) == 0
    import json

    listed = json.loads(got)
    assert len(listed) == 40000 and listed[-1]["n"] == 39999
