"""Fuzzing patterns (types/pattern.py): any text compiles or is BadParameter; matching
never raises, whatever the value holds (lone surrogates come through JSON), and a glob's
``*`` stands for any characters, newlines and lone surrogates included, as Python's own
regular expressions read it."""

from __future__ import annotations

import contextlib
import re

from hypothesis import example, given
from hypothesis import strategies as st

from gatehouse.errors import BadParameter
from gatehouse.types.pattern import compile_pattern, is_regex, match_pattern
from tests.fuzz.budget import fuzz

# Every code point, lone surrogates too (json.loads('"\\ud800"') makes one).
_any_text = st.text(st.characters(exclude_categories=()), max_size=12)
_globs = st.lists(st.text(st.characters(exclude_categories=()), max_size=4) | st.just("*"),
                  max_size=5).map("".join).filter(lambda p: not is_regex(p))
_regex_bits = st.sampled_from(["a", "b", ".", "*", "+", "?", "(", ")", "|", "[", "]", "-",
                               "\\", "{", "}", "1", ",", "$", "^", "\n", "\ud800", "é"])
_regexes = st.lists(_regex_bits, max_size=10).map(lambda bits: "^" + "".join(bits) + "$")


@fuzz(300)
@given(_regexes | _globs | _any_text)
@example("^a\ud800$")
def test_any_pattern_compiles_or_is_bad_parameter(pattern: str) -> None:
    with contextlib.suppress(BadParameter):
        compile_pattern(pattern)


@fuzz(300)
@given(_regexes | _globs | _any_text, _any_text)
@example("a*", "a\ud800")
@example("^(a)$", "\udcff")
def test_matching_never_raises(pattern: str, value: str) -> None:
    assert isinstance(match_pattern(pattern, value), bool)


@fuzz(300)
@given(_globs, _any_text)
@example("a*b", "a\nb")
@example("*", "\n")
@example("prod*", "prod\ud800")
@example("*\ud800", "\ud800")
def test_a_glob_star_matches_any_characters(pattern: str, value: str) -> None:
    if re.search("[\ud800-\udfff]", pattern):  # no UTF-8 for a glob: invalid, matches nothing
        assert match_pattern(pattern, value) == ("*" not in pattern and pattern == value)
        return
    oracle = "".join(".*" if part == "*" else re.escape(part)
                     for part in re.split(r"(\*)", pattern))
    assert match_pattern(pattern, value) == (re.fullmatch(oracle, value, re.DOTALL) is not None)
