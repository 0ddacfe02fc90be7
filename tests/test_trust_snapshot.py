"""What nodes read from the auth's trust snapshot: recording is on unless it says off."""

from __future__ import annotations

import pytest

from gatehouse.wire.trust import TrustSnapshot


@pytest.mark.parametrize(("value", "record"), [
    ("node", True), ("off", False), (None, True), ("proxy", True), (0, True),
])
def test_sessions_are_recorded_unless_the_auth_says_off(value: object, record: bool) -> None:
    raw = {"cluster": "c"} if value is None else {"cluster": "c", "session_recording": value}
    assert TrustSnapshot.from_json(raw).record_sessions is record
