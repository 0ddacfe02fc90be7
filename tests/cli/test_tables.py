"""The shared table code (cli/common.py): every cell whole, wrapped only between words."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from gatehouse.cli.common import _printable, format_table

SESSION = "3f2c6a1e-8a0b-4c1e-9d7e-2b8f0c4d5e6f"
HEADERS = ["Session", "Cluster", "User", "Login", "Node", "Start", "End"]
ROW = [SESSION, "us-east-1a.example.com", "alice", "root", "node1", "2026-01-02T03:04:05",
       "2026-01-02T03:05:06"]


def test_without_a_width_every_row_is_one_full_line() -> None:
    text = format_table(HEADERS, [ROW, ROW])
    lines = text.splitlines()
    assert len(lines) == 3
    assert lines[1].split() == ROW
    assert lines[0].index("Cluster") == lines[1].index("us-east-1a")  # aligned


def test_in_80_columns_ids_stay_whole() -> None:
    spec = "hostname: node1, addr: 127.0.0.1:3022, cluster: sso.example.com, " \
           f"host_id: {SESSION}"
    text = format_table(["Kind", "Name", "Spec"], [["node", SESSION, spec]], width=80)
    assert all(len(line) <= 80 for line in text.splitlines()), text
    assert text.count(SESSION) == 2, text  # the name, and the host id in the spec
    assert " ".join(text.split()).endswith(spec), text


def test_a_table_too_wide_for_its_words_is_wider_than_the_terminal_not_cut() -> None:
    text = format_table(HEADERS, [ROW], width=40)
    assert SESSION in text and "2026-01-02T03:05:06" in text
    assert max(len(line) for line in text.splitlines()) > 40


def test_bold_headers_only_when_asked() -> None:
    assert "\x1b" not in format_table(["A"], [["b"]], width=80)
    assert format_table(["A"], [["b"]], width=80, bold=True).startswith("\x1b[1mA\x1b[0m\n")


def test_control_characters_are_shown_not_sent() -> None:
    assert _printable("ls\x1b[2J\r\n\u2028") == "ls\\x1b[2J\\r\\n\\u2028"
    assert _printable("café ✓") == "café ✓"


@given(rows=st.lists(st.lists(st.text(st.characters(codec="ascii", categories=["L", "N", "P"]),
                                      max_size=30), min_size=3, max_size=3), max_size=5),
       width=st.integers(10, 120))
def test_wrapping_keeps_every_word(rows: list[list[str]], width: int) -> None:
    text = format_table(["A", "B", "C"], rows, width=width)
    words = set(text.split())
    assert all(w in words for row in rows for cell in row for w in cell.split())
