"""JSON carried in certificates, parsed within a size and a nesting depth (pure).

A certificate is decoded before its CA is looked up, so its JSON may come from
anyone. Python's parser recurses once per nesting level and raises RecursionError
(not ValueError) past about a thousand; the depth is therefore measured first, on
the text with its strings taken out, in one linear pass.
"""

from __future__ import annotations

import itertools
import json
import re

from gatehouse.errors import BadParameter

__all__ = ["check_size", "loads"]

# A JSON string (RFC 8259 §7): brackets inside one are text, not nesting.
_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_DEPTH_STEP = {"[": 1, "{": 1, "]": -1, "}": -1}


def check_size(text: str, what: str, max_chars: int) -> str:
    """``text`` if it has at most ``max_chars`` characters; BadParameter otherwise."""
    if len(text) > max_chars:
        raise BadParameter(f"{what}: {len(text)} characters, longer than {max_chars}")
    return text


def loads(text: str, what: str, *, max_chars: int, max_depth: int) -> object:
    """``json.loads(text)``, or BadParameter naming ``what`` if ``text`` is longer than
    ``max_chars``, nested deeper than ``max_depth`` or not JSON."""
    check_size(text, what, max_chars)
    steps = (_DEPTH_STEP[c] for c in _STRING.sub("", text) if c in _DEPTH_STEP)
    if max(itertools.accumulate(steps), default=0) > max_depth:
        raise BadParameter(f"{what}: nested deeper than {max_depth}")
    try:
        return json.loads(text)
    except ValueError as exc:
        raise BadParameter(f"{what}: not JSON ({exc})") from None
