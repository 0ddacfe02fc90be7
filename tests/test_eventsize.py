"""An audit event past its size bound is cut to fit, never dropped (wire.eventsize)."""

from __future__ import annotations

from typing import Any

import pytest

from gatehouse.wire.eventsize import MAX_FIELDS, MAX_MESSAGE, bound_event, fields_size


def test_an_event_within_bounds_is_kept_as_is() -> None:
    record = {"event": "exec", "message": "m" * MAX_MESSAGE,
              "fields": {"command": "x" * (MAX_FIELDS - 20)}}
    assert bound_event(record) is record


def test_a_long_command_keeps_its_head_and_says_it_was_cut() -> None:
    command = "echo hi; " + "x" * 70000
    out = bound_event({"event": "exec", "fields": {"command": command, "pty": False}})
    fields = out["fields"]
    assert fields_size(fields) == MAX_FIELDS  # as much of the command as fits
    assert fields["command"].startswith("echo hi; xxx") and fields["pty"] is False
    assert fields["truncated"] == {"command": len(command)}
    assert out["event"] == "exec"


def test_a_long_message_is_cut_and_said_so() -> None:
    out = bound_event({"message": "m" * (MAX_MESSAGE + 5), "fields": {"a": 1}})
    assert out["message"] == "m" * MAX_MESSAGE
    assert out["fields"] == {"a": 1, "truncated": {"message": MAX_MESSAGE + 5}}


@pytest.mark.parametrize("text", ['"\\' * 5000, "é€😀" * 5000, "\x00\n" * 9000])
def test_escaped_characters_still_fit(text: str) -> None:
    out = bound_event({"fields": {"command": text}})
    assert MAX_FIELDS - 12 < fields_size(out["fields"]) <= MAX_FIELDS  # no room left unused
    assert text.startswith(out["fields"]["command"]) and out["fields"]["command"]


def test_several_large_fields_are_cut_largest_first() -> None:
    fields: dict[str, Any] = {"a": "a" * 6000, "b": "b" * 5000, "c": ["c" * 100] * 80}
    out = bound_event({"fields": fields})["fields"]
    assert fields_size(out) <= MAX_FIELDS
    assert set(out["truncated"]) <= {"a", "b", "c"} and "c" in out["truncated"]
    assert isinstance(out["c"], str)  # what is not a string keeps the head of its JSON


def test_a_host_cannot_hide_a_cut_behind_its_own_truncated_field() -> None:
    out = bound_event({"fields": {"truncated": {}, "command": "x" * 20000}})
    assert out["fields"]["truncated"] == {"command": 20000}


def test_many_small_fields_past_the_bound_leave_a_note() -> None:
    fields = {f"field-{i}": i for i in range(2000)}
    out = bound_event({"fields": fields})
    assert out["fields"] == {"truncated": {"fields": fields_size(fields)}}


@pytest.mark.parametrize("record", [{"message": 42, "fields": {"x": "y" * 9000}},
                                    {"message": "m" * 3000, "fields": "not an object"}])
def test_ill_typed_events_are_left_for_the_receiver_to_refuse(record: dict[str, Any]) -> None:
    assert bound_event(record) is record
