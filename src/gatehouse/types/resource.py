"""The envelope every resource shares, and the small field types the kinds reuse.

A resource is ``kind``, ``version``, ``metadata``, ``spec`` and an optional
``status``. Models validate on construction and reject unknown fields, so a
typo in a YAML file is an error that names the field instead of a silent no-op.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    SerializerFunctionWrapHandler,
    model_serializer,
)
from pydantic_core import PydanticCustomError

from gatehouse._sys.hostport import split_host_port
from gatehouse.errors import BadParameter

__all__ = [
    "NAME_PATTERN",
    "NAME_RULE",
    "Duration",
    "HostPort",
    "LabelKey",
    "Metadata",
    "Model",
    "Name",
    "Resource",
    "format_duration",
    "invalid",
    "is_name",
    "parse_duration",
    "split_host_port",
    "time_before",
]

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,252}$"
NAME_RULE = ("use letters, digits and . _ @ -, starting with a letter or digit, "
             "at most 253 characters")
_NAME_RE = re.compile(NAME_PATTERN)
# Label keys in the spirit of Kubernetes/Teleport ones; "*" is reserved for selectors.
_LABEL_KEY_RE = re.compile(r"^[A-Za-z0-9/._:-]{1,253}$")
_DURATION_RE = re.compile(r"(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?")


def invalid(message: str) -> PydanticCustomError:
    """A validation error whose text is ``message`` as written (no "Value error," prefix)."""
    return PydanticCustomError("invalid", "{message}", {"message": message})


class Model(BaseModel):
    """Base of every resource model: unknown fields are errors, assignments are checked."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


def is_name(value: str) -> bool:
    """Whether ``value`` may name a resource (NAME_RULE says what may)."""
    return _NAME_RE.fullmatch(value) is not None


def _check_name(value: str) -> str:
    if not is_name(value):
        raise invalid(f"{value!r} is not a valid name: {NAME_RULE}")
    return value


Name = Annotated[str, AfterValidator(_check_name)]
"""A resource name (also used for references to other resources, e.g. role names)."""


# --- durations ----------------------------------------------------------------------------


def parse_duration(text: str) -> dt.timedelta:
    """``"2d"``, ``"8h"``, ``"15m"``, ``"30s"``, ``"1h30m"`` as a timedelta; BadParameter
    otherwise."""
    match = _DURATION_RE.fullmatch(text.strip())
    if match is None or not any(match.groups()):
        raise BadParameter(
            f"invalid duration {text!r}: expected days, hours, minutes and/or seconds "
            "such as '2d', '8h', '15m', '30s' or '1h30m'"
        )
    try:
        days, hours, minutes, seconds = (int(part or 0) for part in match.groups())
        return dt.timedelta(days=days, hours=hours, minutes=minutes, seconds=seconds)
    except (OverflowError, ValueError):  # ValueError: int() of 4300 digits or more
        raise BadParameter(f"invalid duration {text[:40]!r}: too long") from None


def time_before(now: dt.datetime, text: str, field: str) -> dt.datetime:
    """``now`` less the ``parse_duration`` text of ``field`` (``since=2d``); BadParameter,
    naming the field, for a duration further back than a datetime holds (year 1)."""
    delta = parse_duration(text)
    try:
        return now - delta
    except OverflowError:
        raise BadParameter(f"{field}: {text[:40]!r} is further back than "
                           f"{dt.date.min.isoformat()}, the earliest date there is") from None


def time_after(now: dt.datetime, text: str, field: str) -> dt.datetime:
    """``now`` plus the ``parse_duration`` text of ``field`` (``ttl=30m``); BadParameter,
    naming the field, for a duration further ahead than a datetime holds (year 9999)."""
    delta = parse_duration(text)
    try:
        return now + delta
    except OverflowError:
        raise BadParameter(f"{field}: {text[:40]!r} is further ahead than "
                           f"{dt.date.max.isoformat()}, the last date there is") from None


def format_duration(delta: dt.timedelta) -> str:
    """The shortest ``parse_duration`` text for ``delta`` (whole seconds; "0s" for zero)."""
    if delta < dt.timedelta(0):
        return "-" + format_duration(-delta)
    total = int(delta.total_seconds())
    hours, rest = divmod(total, 3600)
    minutes, seconds = divmod(rest, 60)
    text = "".join(f"{n}{unit}" for n, unit in ((hours, "h"), (minutes, "m"), (seconds, "s")) if n)
    return text or "0s"


def _to_duration(value: object) -> dt.timedelta:
    if isinstance(value, dt.timedelta):
        delta = value
    elif isinstance(value, str):
        try:
            delta = parse_duration(value)
        except BadParameter as exc:
            raise invalid(str(exc)) from None
    else:
        raise invalid(f"expected a duration such as '8h' or '1h30m', got {value!r}")
    if delta <= dt.timedelta(0):
        raise invalid(f"duration must be positive, got {format_duration(delta)!r}")
    return delta


Duration = Annotated[
    dt.timedelta,
    BeforeValidator(_to_duration),
    PlainSerializer(format_duration, return_type=str),
]
"""A positive duration written as "8h", "15m", "1h30m"; serialized the same way."""


# --- addresses ----------------------------------------------------------------------------


def _check_host_port(value: str) -> str:
    try:
        split_host_port(value)
    except BadParameter as exc:
        raise invalid(str(exc)) from None
    return value


HostPort = Annotated[str, AfterValidator(_check_host_port)]
"""A network address "host:port"; kept as text, checked on construction."""


def _check_label_key(key: str) -> str:
    if _LABEL_KEY_RE.fullmatch(key) is None:
        raise invalid(f"{key!r} is not a valid label key: use letters, digits and / . _ : -")
    return key


LabelKey = Annotated[str, AfterValidator(_check_label_key)]
"""A label key: letters, digits and / . _ : - (up to 253)."""


# --- the envelope -------------------------------------------------------------------------


class Metadata(Model):
    """Name, labels, expiry and a description; empty optional fields are left out when dumped."""

    name: Name
    description: str | None = None
    labels: dict[LabelKey, str] = Field(default_factory=dict)
    expires: AwareDatetime | None = None

    @model_serializer(mode="wrap")
    def _drop_empty(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data: dict[str, Any] = handler(self)
        return {key: value for key, value in data.items() if value is not None and value != {}}


class Resource(Model):
    """The common envelope. Each kind narrows ``kind``, ``spec`` and ``status``."""

    kind: str
    version: Literal["v1"] = "v1"
    metadata: Metadata
    spec: Model
    status: Model | None = None

    @property
    def name(self) -> str:
        return self.metadata.name

    def is_expired(self, now: dt.datetime) -> bool:
        """True once ``metadata.expires`` has passed (``now`` comes from an injected clock)."""
        return self.metadata.expires is not None and self.metadata.expires <= now
