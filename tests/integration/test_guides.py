"""The guides run as written: README's "A single cluster by hand" and
docs/trusted-clusters.md (a root and a leaf on one machine), against real processes.

The convention, in the markdown: the line before each fenced block of a tested guide
(``GUIDES`` below names them, and the part of the README) is a comment
``<!-- test: ACTION -->`` saying what this test does with the block. Every fenced block
in a tested part carries one (``skip (REASON)`` included), so a new example cannot go
untested unnoticed.

- ``run``: a ``console`` block. Each ``$ COMMAND`` line runs in one bash session (what
  a line sets, ``source`` included, holds for the next ones, as in a terminal). The
  lines after a command, up to the next ``$``, are lines it must print (stdout, then
  stderr), in that order, among any others: runs of spaces match any runs of spaces,
  ``...`` matches any text, and ``<name>`` matches a word and remembers it. A command
  must exit 0, unless the next line is ``$ echo $?``, whose output is the status.
- ``run wait=N``: as ``run``, for what the guide says happens within moments: a
  command whose status or output does not match yet runs again every half second, for
  up to N seconds.
- ``start``: a ``console`` block of daemons (``gatehouse start ...``): each starts in
  the background and must print its " is up (" line; the lines shown must be in its
  output. The test stops them at its end.
- ``file=NAME``: the block's text is written to NAME.
- ``skip (REASON)``: not run.

In commands and files, ``<name>`` is replaced with the word an earlier output line
remembered under that name (a token, the node's name). A command with
``--password-stdin`` reads PASSWORD on stdin, as a user types it.

Where they run: a fresh directory (with ``.venv`` linked to this checkout's virtualenv,
as the README runs in the checkout) and a fresh HOME, inside a network namespace of
the test's own with only loopback. So the guides' ports (3025, 3080, ...) and default
paths are used as written, and nothing else on the machine is in their way.
Namespaces need root: elsewhere the guides' runs skip (as root or with CI=true a skip
fails the run, tests/conftest.py).
"""

from __future__ import annotations

import os
import re
import secrets
import shlex
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from gatehouse.process.harness import (
    BIN,
    CMD_TIMEOUT,
    PASSWORD,
    HarnessError,
    Process,
    Result,
    base_env,
    stop_all,
)

REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Guide:
    path: str
    start: str = ""  # the tested part begins at this heading (default: the whole file)
    end: str = ""  # and ends before this one
    venv_on_path: bool = True  # False: the guide itself must put .venv/bin on PATH


GUIDES = [
    Guide("README.md", start="## A single cluster by hand", end="## Trusted clusters",
          venv_on_path=False),
    Guide("docs/trusted-clusters.md"),
    Guide("docs/nodes.md"),
]

_MARK = re.compile(r"^<!-- test: (run(?: wait=(\d+))?|start|file=(\S+)|skip \(.+\)) -->$")
_PLACEHOLDER = re.compile(r"<([a-z][a-z0-9-]*)>")


@dataclass
class Step:
    """One `$ command` of a console block and the lines shown after it."""

    line: int
    command: str
    shown: list[str] = field(default_factory=list)


@dataclass
class Block:
    line: int  # of the opening fence, 1-based
    mark: str  # "run", "start", "file", "skip"
    lang: str  # after the opening fence: console, yaml, ...
    text: str
    wait: float = 0.0
    file: str = ""

    def steps(self) -> list[Step]:
        steps: list[Step] = []
        for n, raw in enumerate(self.text.splitlines(), self.line + 1):
            if raw.startswith("$ "):
                steps.append(Step(n, raw[2:]))
            elif raw.strip():
                assert steps, f"line {n}: output shown before any `$ ` command"
                steps[-1].shown.append(raw)
        return steps


def blocks(guide: Guide) -> list[Block]:
    """The fenced blocks of the guide's tested part, each with its mark."""
    lines = (REPO / guide.path).read_text().splitlines()
    first = lines.index(guide.start) if guide.start else 0
    last = lines.index(guide.end) if guide.end else len(lines)
    found: list[Block] = []
    i = first
    while i < last:
        if not lines[i].startswith("```"):
            i += 1
            continue
        close = lines.index("```", i + 1)
        mark = _MARK.match(lines[i - 1]) if i else None
        if mark is None:
            raise AssertionError(f"{guide.path}:{i + 1}: a fenced block without a "
                                 "`<!-- test: ... -->` line before it (see test_guides.py)")
        kind = mark.group(1).split(" ")[0].split("=")[0]
        text = "\n".join(lines[i + 1:close]) + "\n"
        found.append(Block(i + 1, kind, lines[i][3:], text, wait=float(mark.group(2) or 0),
                           file=mark.group(3) or ""))
        i = close + 1
    return found


def _pattern(shown: str) -> re.Pattern[str]:
    """A shown output line as a regex: `...` any text, `<name>` a word it remembers,
    runs of spaces any runs of spaces (or none, next to `...` or `<name>`)."""
    parts = re.split(r"(\.\.\.|<[a-z][a-z0-9-]*>)", " ".join(shown.split()))
    regex = ""
    for part in parts:
        if part == "...":
            regex += ".*?"
        elif _PLACEHOLDER.fullmatch(part):
            regex += f"(?P<{part[1:-1].replace('-', '_')}>\\S+)"
        elif part.strip():  # spaces next to `...` or `<name>` may be none
            edge = r"\s*"
            regex += edge + r"\s+".join(re.escape(w) for w in part.split()) + edge
    return re.compile(regex)


def match_output(shown: list[str], out: str, err: str) -> dict[str, str] | str:
    """The words the shown lines remember, if they appear in order in the output;
    else the first shown line that does not (a str)."""
    actual = [" ".join(line.split()) for line in (out + err).splitlines()]
    remembered: dict[str, str] = {}
    at = 0
    for line in shown:
        pattern = _pattern(line)
        found = None
        while at < len(actual) and found is None:
            found = pattern.fullmatch(actual[at])
            at += 1
        if found is None:
            return line
        remembered.update({k.replace("_", "-"): v for k, v in found.groupdict().items()})
    return remembered


class Shell:
    """One bash session in the guide's directory, inside the namespace: each command's
    stdin, stdout, stderr and exit status go through files of its own."""

    def __init__(self, ns: str, cwd: Path, env: dict[str, str], io: Path) -> None:
        self.io = io
        self.count = 0
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", ns, "bash", "--noprofile", "--norc"], cwd=cwd, env=env,
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            text=True, start_new_session=True)
        self._send("set -o pipefail")

    def _send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def run(self, command: str, stdin: str = "") -> Result:
        """Run one command; past CMD_TIMEOUT the session is killed (HarnessError)."""
        self.count += 1
        base = self.io / str(self.count)
        fin, fout, ferr, frc = (base.with_suffix(s) for s in (".in", ".out", ".err", ".rc"))
        fin.write_text(stdin)
        # eval: a syntax error is the command's failure, not the session's; the status
        # is restored afterwards so that a following `echo $?` shows it.
        self._send(f"{{ eval {shlex.quote(command)}; }} <{fin} >{fout} 2>{ferr}; rc=$?; "
                   f"echo $rc >{frc}.tmp; mv {frc}.tmp {frc}; (exit $rc)")
        start = time.monotonic()
        while not frc.exists():
            if time.monotonic() - start > CMD_TIMEOUT or self.proc.poll() is not None:
                self.close()
                raise HarnessError(f"`{command}` did not finish within {CMD_TIMEOUT:.0f} s")
            time.sleep(0.05)
        return Result(("bash", "-c", command), int(frc.read_text()), fout.read_text(),
                      ferr.read_text(), time.monotonic() - start)

    def close(self) -> None:
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)


def _substitute(text: str, remembered: dict[str, str], where: str) -> str:
    def value(m: re.Match[str]) -> str:
        if m.group(1) not in remembered:
            raise AssertionError(f"{where}: <{m.group(1)}> before any output showed it")
        return remembered[m.group(1)]

    return _PLACEHOLDER.sub(value, text)


class GuideRun:
    """Runs a guide's blocks in order in ``workdir``, as a user in a terminal would."""

    def __init__(self, guide: Guide, ns: str, workdir: Path) -> None:
        self.guide = guide
        self.ns = ns
        self.dir = workdir / "guide"
        self.dir.mkdir()
        (self.dir / ".venv").symlink_to(BIN.parent)
        home = workdir / "home"
        home.mkdir()
        self.env = base_env(HOME=str(home))  # the venv's scripts first on PATH
        self.env.pop("VIRTUAL_ENV", None)
        if not guide.venv_on_path:
            self.env["PATH"] = os.pathsep.join(
                p for p in self.env["PATH"].split(os.pathsep) if Path(p) != BIN)
            assert shutil.which("gatectl", path=self.env["PATH"]) is None, \
                "gatectl is on PATH without the venv: the guide's PATH step proves nothing"
        io = workdir / "io"
        io.mkdir()
        self.shell = Shell(ns, self.dir, self.env, io)
        self.daemons: list[Process] = []
        self.remembered: dict[str, str] = {}

    def close(self) -> None:
        self.shell.close()
        stop_all(self.daemons)

    def where(self, line: int) -> str:
        return f"{self.guide.path}:{line}"

    def run_block(self, block: Block) -> None:
        if block.mark == "file":
            where = self.where(block.line)
            (self.dir / block.file).write_text(_substitute(block.text, self.remembered, where))
        elif block.mark == "start":
            for step in block.steps():
                self.start(step)
        elif block.mark == "run":
            steps = block.steps()
            for i, step in enumerate(steps):
                rc = 0
                if i + 1 < len(steps) and steps[i + 1].command.strip() == "echo $?":
                    rc = int(steps[i + 1].shown[0])
                self.run(step, rc, block.wait)

    def run(self, step: Step, rc: int, wait: float) -> None:
        command = _substitute(step.command, self.remembered, self.where(step.line))
        stdin = PASSWORD + "\n" if "--password-stdin" in command else ""
        deadline = time.monotonic() + wait
        while True:
            res = self.shell.run(command, stdin)
            found = match_output(step.shown, res.out, res.err)
            if res.rc == rc and isinstance(found, dict):
                self.remembered.update(found)
                return
            if time.monotonic() >= deadline:
                why = (f"exited {res.rc}, the guide expects {rc}" if res.rc != rc
                       else f"did not print a line like {found!r}")
                raise AssertionError(f"{self.where(step.line)}: `{command}` {why}\n{res}")
            time.sleep(0.5)

    def start(self, step: Step) -> None:
        command = _substitute(step.command, self.remembered, self.where(step.line))
        daemon = Process(command, ["ip", "netns", "exec", self.ns, "bash", "-c",
                                   f"exec {command}"],
                         self.dir.parent / f"daemon{len(self.daemons) + 1}.log",
                         env=self.env | {"PATH": base_env()["PATH"]}, cwd=self.dir)
        self.daemons.append(daemon)
        daemon.start().wait_up()
        found = match_output(step.shown, daemon.output(), "")
        assert isinstance(found, dict), (
            f"{self.where(step.line)}: `{command}` did not print a line like {found!r}\n"
            f"{daemon.output()}")
        self.remembered.update(found)


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)


@pytest.fixture
def namespace() -> Iterator[str]:
    """A network namespace with only loopback, up: a machine of the test's own."""
    if os.geteuid() != 0 or not shutil.which("ip"):
        pytest.skip("needs root and iproute2 to create a network namespace")
    ns = f"ghguide{secrets.token_hex(3)}"
    _ip("netns", "add", ns)
    try:
        _ip("-n", ns, "link", "set", "lo", "up")
        yield ns
    finally:
        subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=10)


@pytest.mark.parametrize("guide", GUIDES, ids=[g.path for g in GUIDES])
def test_every_fenced_block_is_marked(guide: Guide) -> None:
    found = blocks(guide)
    assert any(b.mark == "run" for b in found), f"{guide.path}: nothing to run"
    for block in found:
        if block.mark in ("run", "start"):
            where = f"{guide.path}:{block.line}"
            assert block.lang == "console", f"{where}: a {block.mark} block is ```console"
            assert block.steps(), f"{where}: no `$ ` command in the block"


@pytest.mark.needs_netns
@pytest.mark.timeout(300)
@pytest.mark.parametrize("guide", GUIDES, ids=[g.path for g in GUIDES])
def test_guide_runs_as_written(guide: Guide, namespace: str, tmp_path: Path) -> None:
    run = GuideRun(guide, namespace, tmp_path)
    try:
        for block in blocks(guide):
            run.run_block(block)
    finally:
        run.close()


def test_shown_lines_match_in_order_and_remember_words() -> None:
    out = "Node   Address\nvm     127.0.0.1:3022  gatehouse.local   \n"
    assert match_output(["<node> 127.0.0.1:3022 ..."], out, "") == {"node": "vm"}
    assert match_output(["Node Address", "vm ..."], out, "") == {}
    assert match_output(["vm ...", "Node Address"], out, "") == "Node Address"  # order
    assert match_output(["127.0.0.1:3022"], out, "") == "127.0.0.1:3022"  # whole lines
    assert match_output(["# a token ..."], "tok\n", "# a token, single use\n") == {}
