"""Validation of events: one function shared by ``track()`` and the ingest API.

A clean event is a small JSON-serializable dict (it may wait in a Redis buffer)::

    {"visitor": "<uuid>", "kind": "product_view", "item": "sku-1", "category": "shoes",
     "value": None, "properties": {}, "occurred_at": "2026-11-30T12:00:00.000000+00:00"}

``occurred_at`` is always UTC with microseconds (:func:`time_text`), so clean events' times
compare as text.
"""

from __future__ import annotations

import json
import math
import re
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from aigc_django.conf import aigc_settings
from aigc_django.exceptions import InvalidEvent
from aigc_django.models.tracking import EventKind

BUILTIN_KINDS = frozenset(EventKind.values)
KIND_PATTERN = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
FIELDS = frozenset({"kind", "item", "category", "value", "properties", "occurred_at"})
FIELDS_WITH_VISITOR = FIELDS | {"visitor"}
MAX_KEY_LENGTH = 128
# Clocks drift: a browser a few minutes ahead is not an error.
MAX_CLOCK_SKEW = timedelta(minutes=5)


# The exact forms of clean events' times (what time_text() writes) and visitor ids (what
# str(uuid.UUID(...)) writes), ASCII digits only ("\d" would take any script's digits, which
# PostgreSQL refuses).
TIME_FORM = r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{6}\+00:00"
UUID_FORM = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
TIME_TEXT = re.compile(TIME_FORM)
UUID_TEXT = re.compile(UUID_FORM)
# Whole columns of them joined with commas are checked by shape instead, several times
# cheaper than a match (the "checks" step of benchmarks/ingest_bulk.py --phases): with each
# ASCII digit mapped to one letter ("9" for a decimal digit, "x" for a lower-case hex one), a
# column of texts of the form equals the form's shape repeated (a text holding a comma cannot
# pass). Tests check that the shapes agree with the patterns above.
_DIGITS = str.maketrans("0123456789", "9" * 10)
_HEX_DIGITS = str.maketrans("0123456789abcdef", "x" * 16)
TIME_SHAPE = "9999-99-99T99:99:99.999999+99:99"
UUID_SHAPE = "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx"
UTC_OFFSET = "+00:00"


def _repeated(shape: str, count: int) -> str:
    return (shape + ",") * (count - 1) + shape


def are_time_texts(joined: str, count: int) -> bool:
    """Whether ``joined`` is ``count`` texts in time_text()'s form joined with commas."""
    # The shape leaves the offset's digits open; one "+" per text, so count them as well.
    return joined.count(UTC_OFFSET) == count and joined.translate(_DIGITS) == _repeated(
        TIME_SHAPE, count
    )


def are_uuid_texts(joined: str, count: int) -> bool:
    """Whether ``joined`` is ``count`` canonical UUID texts joined with commas."""
    return joined.translate(_HEX_DIGITS) == _repeated(UUID_SHAPE, count)


def time_text(when: datetime | str) -> str:
    """A time as clean events carry it: UTC to the microsecond, so that the texts of two
    times sort as the times do (``"2026-11-30T12:00:00.000000+00:00"``). Takes a datetime
    (naive ones are taken as UTC) or an ISO 8601 text (returned as it is when already in
    this form; ValueError when it is not a time)."""
    if isinstance(when, str):
        if TIME_TEXT.fullmatch(when):
            return when
        when = datetime.fromisoformat(when)
    if not isinstance(when, datetime):
        raise TypeError(f"a time must be a datetime or an ISO 8601 text, not {when!r}")
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.astimezone(UTC).isoformat(timespec="microseconds")


def visitor_text(visitor: uuid.UUID | str) -> str:
    """A visitor id as clean events carry it: a lower-case, hyphenated UUID. Takes a UUID or
    any text ``uuid.UUID`` reads (returned as it is when already in this form); ValueError
    when it is not a UUID."""
    if isinstance(visitor, str) and UUID_TEXT.fullmatch(visitor):
        return visitor
    return str(visitor if isinstance(visitor, uuid.UUID) else uuid.UUID(str(visitor)))


def allowed_kinds() -> frozenset[str]:
    custom = aigc_settings.CUSTOM_EVENT_KINDS
    return BUILTIN_KINDS | frozenset([custom] if isinstance(custom, str) else custom)


def _any_string(value: Any, test: Callable[[str], bool]) -> bool:
    """Whether ``test`` holds for any string inside a JSON value (keys included)."""
    if isinstance(value, str):
        return test(value)
    if isinstance(value, dict):
        return any(_any_string(k, test) or _any_string(v, test) for k, v in value.items())
    if isinstance(value, list):
        return any(_any_string(v, test) for v in value)
    return False


def _has_nul(text: str) -> bool:
    """PostgreSQL refuses NUL characters in text."""
    return "\x00" in text


def _is_unicode(text: str) -> bool:
    """Whether a string is encodable as UTF-8: JSON's ``"\\ud800"`` escapes decode to lone
    surrogates, which neither database can store."""
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _key(data: dict[str, Any], field: str) -> str:
    value = data.get(field)
    if value is None:
        return ""
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise InvalidEvent(field, "must be a string")
    try:
        value = str(value)
    except ValueError:  # an integer of more digits than Python converts
        raise InvalidEvent(field, f"is longer than {MAX_KEY_LENGTH} characters") from None
    if "\x00" in value:
        raise InvalidEvent(field, "must not contain NUL characters")
    if not _is_unicode(value):
        raise InvalidEvent(field, "must be valid Unicode (no unpaired surrogates)")
    if len(value) > MAX_KEY_LENGTH:
        raise InvalidEvent(field, f"is longer than {MAX_KEY_LENGTH} characters")
    return value


def clean_event(
    data: Any,
    *,
    visitor_id: uuid.UUID | str | None,
    allow_visitor_field: bool = False,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Validate one raw event and return it clean; raise :class:`InvalidEvent` naming the field.

    ``allow_visitor_field`` lets server-to-server callers name the visitor in the event
    itself (``"visitor": "<uuid>"``); a browser's events always belong to its cookie.
    """
    if not isinstance(data, dict):
        raise InvalidEvent("", "must be a JSON object")
    known = FIELDS_WITH_VISITOR if allow_visitor_field else FIELDS
    for field in data:
        if field not in known:
            # The name is echoed in the error: printable even when it is not valid Unicode.
            name = str(field)[:MAX_KEY_LENGTH]
            if not _is_unicode(name):
                name = name.encode("utf-8", "backslashreplace").decode("utf-8")
            raise InvalidEvent(name, "is not a known field")

    if allow_visitor_field and data.get("visitor") is not None:
        visitor_id = data["visitor"]
    if visitor_id is None:
        raise InvalidEvent("visitor", "is required")
    try:
        visitor = visitor_text(visitor_id)
    except ValueError:
        raise InvalidEvent("visitor", "must be a UUID") from None

    kind = data.get("kind")
    if not isinstance(kind, str) or not kind:
        raise InvalidEvent("kind", "is required and must be a string")
    if kind not in BUILTIN_KINDS and kind not in allowed_kinds():
        raise InvalidEvent(
            "kind", f"{kind[:40]!r} is not a builtin kind or one of CUSTOM_EVENT_KINDS"
        )

    value = data.get("value")
    if value is not None:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise InvalidEvent("value", "must be a number")
        try:
            value = float(value)
        except OverflowError:  # an integer beyond a double's range
            raise InvalidEvent("value", "must be finite") from None
        if not math.isfinite(value):
            raise InvalidEvent("value", "must be finite")

    properties = data.get("properties")
    if properties is None:
        properties = {}
    elif not isinstance(properties, dict):
        raise InvalidEvent("properties", "must be a JSON object")
    else:
        limit = aigc_settings.API["MAX_PROPERTIES_BYTES"]
        try:
            text = json.dumps(properties, separators=(",", ":"), allow_nan=False)
        except (TypeError, ValueError):
            raise InvalidEvent(
                "properties", "must be plain JSON (no NaN or Infinity, only JSON types)"
            ) from None
        size = len(text)
        if "\\u0000" in text and _any_string(properties, _has_nul):
            raise InvalidEvent("properties", "must not contain NUL characters")
        # The ASCII text escapes every character beyond the BMP as a surrogate pair too.
        if "\\ud" in text and _any_string(properties, lambda t: not _is_unicode(t)):
            raise InvalidEvent("properties", "must be valid Unicode (no unpaired surrogates)")
        if size > limit:
            raise InvalidEvent("properties", f"is {size} bytes, more than the limit of {limit}")

    now = now or datetime.now(UTC)
    occurred_at = data.get("occurred_at")
    if occurred_at is None:
        when = now
    else:
        if isinstance(occurred_at, datetime):
            when = occurred_at
        elif isinstance(occurred_at, str):
            try:
                when = datetime.fromisoformat(occurred_at)
            except ValueError:
                raise InvalidEvent("occurred_at", "must be an ISO 8601 date and time") from None
        else:
            raise InvalidEvent("occurred_at", "must be an ISO 8601 date and time")
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        if when > now + MAX_CLOCK_SKEW:
            raise InvalidEvent("occurred_at", "is in the future")
        if when < now - timedelta(days=aigc_settings.RETENTION_DAYS):
            raise InvalidEvent("occurred_at", "is older than the retention window")

    return {
        "visitor": visitor,
        "kind": kind,
        "item": _key(data, "item"),
        "category": _key(data, "category"),
        "value": value,
        "properties": properties,
        # A text already in time_text()'s form is kept as it is (not formatted again).
        "occurred_at": occurred_at
        if isinstance(occurred_at, str) and TIME_TEXT.fullmatch(occurred_at)
        else time_text(when),
    }
