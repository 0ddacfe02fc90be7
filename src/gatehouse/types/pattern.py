"""Patterns over names and label values: exact text, a ``*`` glob, or a ``^regex$``.

Label selectors (rbac) and role maps (ARCHITECTURE §5) share this syntax.
Regular expressions run on RE2, whose matching time is linear in the input, so
a hostile pattern or value cannot stall the process. A glob's ``*`` stands for
any characters, newlines included. RE2 reads UTF-8, which a lone surrogate (JSON's
``\ud800`` escapes make one) has no encoding for: in a pattern it is invalid; in a
value it is read as U+FFFD, one character no pattern names, so that ``*`` and ``.``
match it as they match any other (a deny rule ``env: "*"`` must not miss it).
"""

from __future__ import annotations

import functools
import re
from typing import Annotated, Protocol

import re2
from pydantic import AfterValidator

from gatehouse.errors import BadParameter
from gatehouse.types.resource import invalid

__all__ = ["Match", "Pattern", "Regex", "compile_pattern", "full_match", "is_regex",
           "match_pattern"]

_OPTIONS = re2.Options()
_OPTIONS.log_errors = False  # a bad pattern is reported to the caller, not to stderr
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


class Match(Protocol):
    def group(self, index: int = 0, /) -> str: ...

    def expand(self, template: str) -> str: ...

    def groups(self) -> tuple[str | None, ...]: ...


class Regex(Protocol):
    def fullmatch(self, text: str) -> Match | None: ...


def is_regex(pattern: str) -> bool:
    """Whether ``pattern`` is a regular expression (it starts with ``^`` and ends with ``$``)."""
    return len(pattern) >= 2 and pattern.startswith("^") and pattern.endswith("$")


@functools.lru_cache(maxsize=1024)
def compile_pattern(pattern: str) -> Regex:
    """``pattern`` as an RE2 regex to full-match against; BadParameter if it is invalid."""
    try:
        if is_regex(pattern):
            source = pattern
        else:
            source = "(?s:.*)".join(re2.escape(part) for part in pattern.split("*"))
        regex: Regex = re2.compile(source, _OPTIONS)
    except UnicodeEncodeError:
        raise BadParameter(f"invalid pattern {pattern!r}: not valid Unicode text") from None
    except re2.error as exc:
        reason = exc.args[0] if exc.args else "invalid"
        if isinstance(reason, bytes):
            reason = reason.decode(errors="replace")
        raise BadParameter(f"invalid regular expression {pattern!r}: {reason}") from None
    return regex


def full_match(pattern: str, value: str) -> Match | None:
    """``value`` matched in full by the regex or glob ``pattern``; None when it does not
    match or the pattern is invalid."""
    try:
        regex = compile_pattern(pattern)
    except BadParameter:
        return None
    try:
        return regex.fullmatch(value)
    except UnicodeEncodeError:
        return regex.fullmatch(_LONE_SURROGATE.sub("\ufffd", value))


def match_pattern(pattern: str, value: str) -> bool:
    """Whether ``value`` matches ``pattern`` in full; an invalid pattern matches nothing."""
    if "*" not in pattern and not is_regex(pattern):
        return pattern == value
    return full_match(pattern, value) is not None


def _check_pattern(value: str) -> str:
    try:
        compile_pattern(value)
    except BadParameter as exc:
        raise invalid(str(exc)) from None
    return value


Pattern = Annotated[str, AfterValidator(_check_pattern)]
"""A pattern string, checked (regexes compiled) on construction."""
