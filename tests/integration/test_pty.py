"""Interactive `gsh ssh` under a real pseudo-terminal: PTY size, tty name, window resize."""

from __future__ import annotations

import fcntl
import os
import re
import select
import signal
import struct
import subprocess
import termios
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

from gatehouse.process.harness import GSH, Client

WAIT = 15.0


def _set_size(fd: int, rows: int, cols: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


def _take_terminal() -> None:
    """In the child: make the pty (already on fd 0) the controlling terminal."""
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


@dataclass
class Terminal:
    """gsh running on the slave side of a pty; the test holds the master."""

    master: int
    proc: subprocess.Popen[bytes]
    output: bytes = b""  # read but not matched yet
    transcript: bytes = b""  # everything read

    def send(self, text: str) -> None:
        os.write(self.master, text.encode())

    def read_until(self, pattern: str, timeout: float = WAIT) -> re.Match[bytes]:
        """Read until ``pattern`` matches the output gathered since the last match."""
        deadline = time.monotonic() + timeout
        regex = re.compile(pattern.encode())
        while True:
            match = regex.search(self.output)
            if match:
                self.output = self.output[match.end():]
                return match
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no {pattern!r} within {timeout} s; got {self.output!r}")
            ready, _, _ = select.select([self.master], [], [], min(left, 0.5))
            if ready:
                try:
                    chunk = os.read(self.master, 65536)
                except OSError:  # EIO: gsh exited and closed the terminal
                    chunk = b""
                if not chunk:
                    raise AssertionError(f"terminal closed before {pattern!r}; got "
                                         f"{self.output!r} (gsh rc={self.proc.poll()})")
                self.output += chunk
                self.transcript += chunk

    def wait_for_shell(self) -> None:
        """Wait for the remote shell's first output (its prompt): gsh is in raw mode by then."""
        self.read_until(r"\S")
        time.sleep(0.2)

    def resize(self, rows: int, cols: int) -> None:
        _set_size(self.master, rows, cols)  # the kernel signals the foreground group
        self.proc.send_signal(signal.SIGWINCH)  # and so do we, in case it is not the leader

    def drain(self) -> bytes:
        """Everything left until gsh closes the terminal (bounded)."""
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            ready, _, _ = select.select([self.master], [], [], 0.5)
            if not ready:
                if self.proc.poll() is not None:
                    break
                continue
            try:
                chunk = os.read(self.master, 65536)
            except OSError:
                break
            if not chunk:
                break
            self.output += chunk
            self.transcript += chunk
        return self.output


@pytest.fixture
def terminal(alice: Client) -> Iterator[Callable[..., Terminal]]:
    opened: list[Terminal] = []

    def open_terminal(*args: str, rows: int = 24, cols: int = 80) -> Terminal:
        master, slave = os.openpty()
        _set_size(slave, rows, cols)
        proc = subprocess.Popen(
            [str(GSH), *args], stdin=slave, stdout=slave, stderr=slave,
            env=alice.env(TERM="xterm"), start_new_session=True, preexec_fn=_take_terminal,
        )
        os.close(slave)
        term = Terminal(master, proc)
        opened.append(term)
        return term

    yield open_terminal
    for term in opened:
        if term.proc.poll() is None:
            term.proc.kill()
        term.proc.wait(WAIT)
        os.close(term.master)


def test_interactive_shell_gets_a_pty_of_the_local_size(terminal: Callable[..., Terminal]) -> None:
    term = terminal("ssh", "root@node1", rows=33, cols=101)
    term.wait_for_shell()
    term.send("echo SIZE=$(stty size) TTY=$(tty) TERM=$TERM; exit\n")
    match = term.read_until(r"SIZE=(\d+) (\d+) TTY=(\S+) TERM=(\S+)")
    assert match.group(1, 2) == (b"33", b"101")
    assert match.group(3).startswith(b"/dev/pts/")
    assert match.group(4) == b"xterm"
    assert term.proc.wait(WAIT) == 0
    term.drain()


def test_window_resize_reaches_the_remote_pty(terminal: Callable[..., Terminal]) -> None:
    term = terminal("ssh", "root@node1", rows=24, cols=80)
    term.wait_for_shell()
    term.send("echo SIZE=$(stty size)\n")
    assert term.read_until(r"SIZE=(\d+) (\d+)").group(1, 2) == (b"24", b"80")
    term.resize(40, 132)
    deadline = time.monotonic() + WAIT
    while True:  # the resize and the next command race; ask until it shows
        term.send("echo SIZE=$(stty size)\n")
        size = term.read_until(r"SIZE=(\d+) (\d+)").group(1, 2)
        if size == (b"40", b"132") or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert size == (b"40", b"132")
    term.send("exit 4\n")
    assert term.proc.wait(WAIT) == 4


def test_interactive_exit_status_and_ctrl_c(terminal: Callable[..., Terminal]) -> None:
    term = terminal("ssh", "root@node1")
    term.wait_for_shell()
    started = time.monotonic()
    term.send("sleep 30; echo AFTER-SLEEP\n")
    term.read_until(r"sleep 30; echo AFTER-SLEEP\r\n")  # the remote echo of the line
    time.sleep(0.5)
    term.send("\x03")  # ^C goes to the remote foreground job, not to gsh
    term.send("echo ALIVE-$((40+2))\n")
    term.read_until(r"[\r\n]ALIVE-42\r\n")  # the output, not the echo of the command
    assert time.monotonic() - started < 20
    # ^C ended the command list: only the echo of the typed line names AFTER-SLEEP.
    assert not re.search(rb"[\r\n]AFTER-SLEEP\r\n", term.transcript), term.transcript
    assert term.proc.poll() is None
    term.send("exit 3\n")
    assert term.proc.wait(WAIT) == 3


def test_forced_tty_for_a_command(terminal: Callable[..., Terminal]) -> None:
    term = terminal("ssh", "-t", "root@node1", "stty size; tty", rows=30, cols=90)
    term.read_until(r"30 90\r\n/dev/pts/\d+")
    assert term.proc.wait(WAIT) == 0


def test_typeahead_is_not_lost(terminal: Callable[..., Terminal]) -> None:
    term = terminal("ssh", "root@node1")
    term.send("echo TYPED-$((6*7)); exit\n")  # before gsh has even started
    term.read_until(r"TYPED-42", timeout=2)
    assert term.proc.wait(WAIT) == 0
