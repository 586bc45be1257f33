"""Fuzzing and property tests.

* schemathesis generates requests for every operation of ``docs/openapi.yaml`` (and for the
  two plain Django endpoints drf-spectacular cannot see: the slots API and the click
  redirect), sends them as each kind of caller (a new browser, a browser with a visitor
  cookie and data, a server with the API token, a staff session, a bot, a Do-Not-Track
  browser) and asserts that no answer is a 5xx and that every status is one the schema
  documents. A second pass uses tighter body schemas (events of real kinds, real variant
  ids and click tokens) so that the fuzzer gets past the first checks into storage.
* hypothesis property tests of event validation (``clean_event``) and of variant selection
  (``delivery.selection``).

Runs are bounded and derandomized (the same examples on every run), so CI is stable.
"""

from __future__ import annotations

import copy
import json
import random
import types
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
import schemathesis
from django.contrib.auth.models import User
from django.core.cache import cache
from django.http import HttpResponse
from django.test import Client
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.core import NOT_SET

from aigc_django.delivery import bandit, clicks, selection
from aigc_django.delivery import cache as delivery_cache
from aigc_django.exceptions import InvalidEvent
from aigc_django.models import Event, Profile, Segment, Slot, Variant, Visitor
from aigc_django.profiles.build import ensure_everyone
from aigc_django.tracking import ingest
from aigc_django.tracking.events import MAX_KEY_LENGTH, allowed_kinds, clean_event
from tests.conftest import BROWSER_UA

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parent.parent
DOCUMENTED = schemathesis.openapi.from_path(ROOT / "docs" / "openapi.yaml")
TOKEN = "server-token-for-tests-0123456789abcdef"  # AIGC["API"]["TOKENS"] in tests/settings.py
SERVER_VISITOR = "9b2f0a3e-8f7e-4c55-9d3c-2f9b1f1f4a11"

FUZZ = settings(
    max_examples=30,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# The endpoints that are plain Django views (drf-spectacular documents DRF views only).
PLAIN_VIEWS: dict[str, Any] = {
    "openapi": "3.0.3",
    "info": {"title": "aigc-django plain views", "version": "0"},
    "paths": {
        "/aigc/api/slots/{key}/": {
            "get": {
                "parameters": [
                    {
                        "name": "key",
                        "in": "path",
                        "required": True,
                        "schema": {
                            "anyOf": [
                                {"enum": ["home-hero", "cart-nudge", "gone"]},
                                {"type": "string", "pattern": "^[-a-zA-Z0-9_]+$"},
                            ]
                        },
                    },
                    {"name": "size", "in": "query", "schema": {"type": "string"}},
                    {"name": "format", "in": "query", "schema": {"type": "string"}},
                    {"name": "field", "in": "query", "schema": {"type": "string"}},
                ],
                "responses": {code: {"description": code} for code in ("200", "400", "404", "503")},
            }
        },
        "/aigc/r/{token}/": {
            "get": {
                "parameters": [
                    {"name": "token", "in": "path", "required": True, "schema": {"type": "string"}}
                ],
                "responses": {code: {"description": code} for code in ("302", "400", "404")},
            }
        },
    },
}


class World:
    """Rows for the fuzzer to reach: segments, slots, approved variants, a visitor with
    events and a profile, a staff user, and a signed click link."""

    def __init__(self) -> None:
        everyone = ensure_everyone()
        self.runners = Segment.objects.create(key="runners", name="Runners")
        self.hero = Slot.objects.create(
            key="home-hero",
            name="Home hero",
            sizes=[[600, 200]],
            copy_fields={"headline": 50, "body": 120, "cta": 20},
            link="/sale/",
            fallback={"headline": "Fallback hello"},
        )
        self.nudge = Slot.objects.create(
            key="cart-nudge",
            name="Nudge",
            kind=Slot.Kind.COPY,
            copy_fields={"headline": 60},
            link="/cart/",
        )
        self.variants = [
            Variant.objects.create(
                slot=slot,
                segment=segment,
                status=Variant.Status.APPROVED,
                copy={"headline": f"Hi {segment.key}", "body": "<b>x</b>", "cta": "Go"},
            )
            for slot in (self.hero, self.nudge)
            for segment in (everyone, self.runners)
        ]
        self.pending = Variant.objects.create(
            slot=self.hero, segment=self.runners, copy={"headline": "Not yet"}
        )
        self.click_token = clicks.sign_click(self.variants[0].pk, "home-hero", "/sale/")
        self.staff = User.objects.create_superuser("fuzz-staff", "s@example.com", "pw")

    def variant_ids(self) -> list[int]:
        return [v.pk for v in self.variants] + [self.pending.pk]


def _browser(**headers: str) -> Client:
    return Client(headers={"User-Agent": BROWSER_UA, "Origin": "http://testserver", **headers})


def _visitor_client(world: World) -> Client:
    client = _browser()
    visitor_id = client.get("/visitor/").json()["visitor"]
    visitor = Visitor.objects.get(pk=visitor_id)
    Profile.objects.create(visitor=visitor, segment=world.runners, interests={"shoes": 1.0})
    Event.objects.create(visitor=visitor, kind="page_view", properties={"path": "/"})
    return client


def _staff_client(world: World) -> Client:
    client = _browser()
    client.force_login(world.staff)
    return client


# Each caller the endpoints distinguish.
CALLERS: dict[str, Callable[[World], Client]] = {
    "new-browser": lambda world: _browser(),
    "visitor": _visitor_client,
    "server-token": lambda world: Client(headers={"Authorization": f"Token {TOKEN}"}),
    "wrong-token": lambda world: Client(headers={"Authorization": "Token nope"}),
    "staff": _staff_client,
    "bot": lambda world: Client(
        headers={"User-Agent": "Googlebot/2.1", "Origin": "http://testserver"}
    ),
    "do-not-track": lambda world: _browser(DNT="1"),
    "csrf-enforced": lambda world: Client(
        enforce_csrf_checks=True, headers={"User-Agent": BROWSER_UA}
    ),
}


@pytest.fixture
def world() -> Iterator[World]:
    cache.clear()
    delivery_cache.forget_local()
    yield World()
    cache.clear()
    delivery_cache.forget_local()


def send(client: Client, case: Any) -> HttpResponse:
    """Send a schemathesis case through Django's test client (in this test's transaction)."""
    headers = {key: str(value) for key, value in (case.headers or {}).items()}
    if case.body is NOT_SET:
        data, content_type = b"", "application/octet-stream"
    elif isinstance(case.body, bytes):  # negative mode: bytes that are no JSON at all
        data, content_type = case.body, case.media_type or "application/octet-stream"
    else:
        data = json.dumps(case.body).encode()
        content_type = case.media_type or "application/json"
    return client.generic(
        case.method,
        case.formatted_path,
        data,
        content_type=content_type,
        headers=headers,
        QUERY_STRING=urlencode(case.query or {}, doseq=True),
    )


def documented_statuses(operation: Any) -> set[int]:
    return {int(code) for code in operation.definition.raw["responses"]}


def fuzz(
    schema: Any,
    client: Client,
    label: str,
    mode: schemathesis.GenerationMode = schemathesis.GenerationMode.POSITIVE,
) -> list[int]:
    """Run the schema's strategy for one operation; return the statuses seen."""
    operation = schema[label.split(" ", 1)[1]][label.split(" ", 1)[0]]
    allowed = documented_statuses(operation)
    seen: list[int] = []

    @given(case=operation.as_strategy(generation_mode=mode))
    @FUZZ
    def run(case: Any) -> None:
        response = send(client, case)
        seen.append(response.status_code)
        assert response.status_code < 500, (
            f"{case.method} {case.formatted_path} answered {response.status_code}: "
            f"{response.content[:500]!r}\nbody: {case.body!r}"
        )
        assert response.status_code in allowed, (
            f"{case.method} {case.formatted_path} answered {response.status_code}, which "
            f"the schema does not document ({sorted(allowed)}): {response.content[:300]!r}"
        )

    run()
    return seen


def operation_labels(schema: Any) -> list[str]:
    return [f"{op.ok().method.upper()} {op.ok().path}" for op in schema.get_all_operations()]


def test_the_schema_lists_every_endpoint_of_the_api_urlconf() -> None:
    from aigc_django.api.urls import urlpatterns

    documented = {label.split(" ", 1)[1] for label in operation_labels(DOCUMENTED)}
    plain = set(PLAIN_VIEWS["paths"])
    for pattern in urlpatterns:
        route = "/aigc/api/" + str(pattern.pattern).replace("<slug:key>", "{key}")
        assert route in documented | plain, f"{route} is fuzzed by no schema"


@pytest.mark.parametrize("caller", sorted(CALLERS))
@pytest.mark.parametrize("label", operation_labels(DOCUMENTED))
def test_no_documented_operation_answers_5xx(world: World, caller: str, label: str) -> None:
    fuzz(DOCUMENTED, CALLERS[caller](world), label)


@pytest.mark.parametrize("caller", ["new-browser", "visitor"])
def test_feedback_bodies_that_break_its_schema_are_no_5xx(world: World, caller: str) -> None:
    # Negative mode: bodies that are not objects (events accept any JSON, so only
    # feedback has a schema to break).
    statuses = fuzz(
        DOCUMENTED,
        CALLERS[caller](world),
        "POST /aigc/api/feedback/",
        schemathesis.GenerationMode.NEGATIVE,
    )
    assert set(statuses) <= {400, 413}, statuses


@settings(FUZZ, max_examples=60)
@given(
    body=st.binary(max_size=300)
    | st.text(st.characters(exclude_categories=())).map(
        lambda text: text.encode("utf-8", "surrogatepass")
    ),
    content_type=st.sampled_from(
        ["application/json", "text/plain;charset=UTF-8", "application/x-www-form-urlencoded", ""]
    ),
    path=st.sampled_from(["/aigc/api/events/", "/aigc/api/feedback/"]),
    token=st.booleans(),
)
def test_raw_bytes_of_any_kind_are_no_5xx(body, content_type, path, token) -> None:
    """Bodies that are not JSON at all (invalid UTF-8, encoded surrogates, form data), as a
    browser's sendBeacon or a broken client sends them."""
    client = Client(headers={"Authorization": f"Token {TOKEN}"}) if token else _browser()
    response = client.generic("POST", path, body, content_type=content_type)
    assert response.status_code in {202, 400, 403, 413}, response.content


def plain_views_schema(world: World) -> Any:
    raw = copy.deepcopy(PLAIN_VIEWS)
    token = raw["paths"]["/aigc/r/{token}/"]["get"]["parameters"][0]
    token["schema"] = {"anyOf": [{"enum": [world.click_token]}, {"type": "string"}]}
    return schemathesis.openapi.from_dict(raw)


@pytest.mark.parametrize("caller", ["new-browser", "visitor", "staff", "bot"])
@pytest.mark.parametrize("label", ["GET /aigc/api/slots/{key}/", "GET /aigc/r/{token}/"])
def test_no_plain_view_answers_5xx(world: World, caller: str, label: str) -> None:
    fuzz(plain_views_schema(world), CALLERS[caller](world), label)


def deep_schema(world: World, *, server: bool = False) -> Any:
    """docs/openapi.yaml with bodies that pass the first checks: events of real kinds with
    typed fields (and, for a server, a visitor), impressions of real variant ids and real
    click tokens."""
    raw = copy.deepcopy(DOCUMENTED.raw_schema)
    now = datetime.now(UTC)
    when = [(now - timedelta(minutes=m)).isoformat() for m in (0, 1, 60 * 24 * 3)]
    event = {
        "type": "object",
        "required": ["kind"],
        "additionalProperties": False,
        "properties": {
            "kind": {"enum": sorted(allowed_kinds())},
            "item": {"anyOf": [{"type": "string", "maxLength": 140}, {"type": "integer"}]},
            "category": {"type": "string", "maxLength": 140},
            # schemathesis draws numbers as doubles: integers beyond a double's range are
            # left to the property tests of clean_event below.
            "value": {"type": "number"},
            "properties": {"type": "object"},
            "occurred_at": {"anyOf": [{"enum": when}, {"type": "string", "format": "date-time"}]},
        },
    }
    if server:
        event["properties"]["visitor"] = {"enum": [SERVER_VISITOR, str(uuid.uuid4())]}
    events = raw["paths"]["/aigc/api/events/"]["post"]["requestBody"]["content"]
    events["application/json"]["schema"] = {
        "anyOf": [
            {"type": "array", "items": event, "maxItems": 5},
            {
                "type": "object",
                "required": ["events"],
                "additionalProperties": False,
                "properties": {"events": {"type": "array", "items": event, "maxItems": 5}},
            },
        ]
    }
    feedback = raw["paths"]["/aigc/api/feedback/"]["post"]["requestBody"]["content"]
    feedback["application/json"]["schema"] = {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "impressions": {
                "type": "array",
                "maxItems": 8,
                "items": {"anyOf": [{"enum": world.variant_ids()}, {"type": "integer"}]},
            },
            "clicks": {
                "type": "array",
                "maxItems": 3,
                "items": {"anyOf": [{"enum": [world.click_token]}, {"type": "string"}]},
            },
        },
    }
    return schemathesis.openapi.from_dict(raw)


@pytest.mark.parametrize(
    ("label", "caller"),
    [
        ("POST /aigc/api/events/", "new-browser"),
        ("POST /aigc/api/events/", "visitor"),
        ("POST /aigc/api/events/", "server-token"),
        ("POST /aigc/api/events/", "do-not-track"),
        ("POST /aigc/api/feedback/", "new-browser"),
        ("POST /aigc/api/feedback/", "visitor"),
        ("POST /aigc/api/feedback/", "do-not-track"),
    ],
)
def test_well_formed_bodies_reach_storage_without_5xx(world: World, caller: str, label: str):
    schema = deep_schema(world, server=caller == "server-token")
    statuses = fuzz(schema, CALLERS[caller](world), label)
    # The tight schema gets past validation: some requests were accepted.
    assert 202 in statuses, statuses


# Regressions: 5xx the fuzzing found ---------------------------------------------------------


def post_events(caller: str, body: str) -> HttpResponse:
    if caller == "server":
        client = Client(headers={"Authorization": f"Token {TOKEN}"})
        body = body.replace('{"kind"', f'{{"visitor": "{SERVER_VISITOR}", "kind"')
    else:
        client = _browser()
        client.get("/visitor/")
    return client.post("/aigc/api/events/", body, content_type="application/json")


@pytest.mark.parametrize("caller", ["browser", "server"])
@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        # JSON integers have no size limit; float() of a huge one raised OverflowError.
        ('[{"kind": "page_view", "value": 1%s}]' % ("0" * 400), "value", "must be finite"),
        # "\ud800" is valid JSON for a lone surrogate, which no database stores (500 on
        # SQLite and PostgreSQL for keys, 503 "try again" on PostgreSQL for properties).
        ('[{"kind": "page_view", "item": "\\ud800"}]', "item", "valid Unicode"),
        ('[{"kind": "page_view", "category": "a\\udfffb"}]', "category", "valid Unicode"),
        ('[{"kind": "page_view", "properties": {"a": ["\\ud800"]}}]', "properties", "Unicode"),
        ('[{"kind": "page_view", "properties": {"\\udc00": 1}}]', "properties", "Unicode"),
        # An unknown field's name is echoed in the error; the JSON renderer could not
        # encode a lone surrogate (500).
        ('[{"kind": "page_view", "\\ud800": 1}]', "\\ud800", "is not a known field"),
    ],
)
def test_hostile_json_in_events_is_a_400_not_a_5xx(caller, body, field, message):
    response = post_events(caller, body)
    assert response.status_code == 400, response.content
    (error,) = response.json()["errors"]
    assert error["field"] == field and message in error["message"]
    assert not Event.objects.exists()


def test_characters_beyond_the_bmp_are_still_accepted():
    # The surrogate check must not refuse real surrogate *pairs* (emoji, CJK extension B).
    body = json.dumps([{"kind": "page_view", "item": "\U0001f45f", "properties": {"q": "𠀀"}}])
    response = post_events("server", body)
    assert response.status_code == 202, response.content
    event = Event.objects.get()
    assert (event.item_key, event.properties) == ("\U0001f45f", {"q": "𠀀"})


@pytest.mark.parametrize("impression", [2**63, 2**64 + 5, 10**30])
def test_impression_ids_beyond_a_database_integer_are_a_400(world, impression):
    # SQLite cannot bind an integer beyond 64 bits: the lookup raised OverflowError (500).
    client = _visitor_client(world)
    body = json.dumps({"impressions": [world.variants[0].pk, impression]})
    response = client.post("/aigc/api/feedback/", body, content_type="application/json")
    assert response.status_code == 400, response.content
    assert "positive integers" in response.json()["error"]
    assert Variant.objects.get(pk=world.variants[0].pk).impressions == 0


def test_the_largest_database_integer_is_still_an_id(world):
    client = _visitor_client(world)
    body = json.dumps({"impressions": [world.variants[0].pk, 2**63 - 1]})
    response = client.post("/aigc/api/feedback/", body, content_type="application/json")
    assert response.status_code == 202, response.content
    assert response.json() == {"impressions": 1, "ignored": 1, "clicks": 0}


# Property tests: event validation --------------------------------------------------------

PROPERTIES = settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
# Any text a JSON parser can hand over, lone surrogates and NUL included.
any_text = st.text(
    st.characters(exclude_categories=()) | st.sampled_from(["\ud800", "\udfff", "\x00"]),
    max_size=40,
)
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()  # unbounded, as JSON is
    | st.integers(2**1000, 2**1100)  # beyond a double
    | st.floats()  # NaN and infinities too: track() gets Python values
    | any_text,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(any_text, children, max_size=4)
    ),
    max_leaves=12,
)
KINDS = sorted(allowed_kinds())
NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
# Events that get past the first checks more often: a known kind, known fields with any
# values, sometimes one unknown field.
near_valid_events = st.tuples(
    st.fixed_dictionaries(
        {"kind": st.sampled_from(KINDS)},
        optional={
            "item": any_text | st.integers() | json_values,
            "category": any_text | json_values,
            "value": st.floats() | st.integers() | st.integers(2**1000, 2**1100) | json_values,
            "properties": st.dictionaries(any_text, json_values, max_size=4) | json_values,
            "occurred_at": st.timedeltas(timedelta(days=-400), timedelta(days=400)).map(
                lambda delta: (NOW + delta).isoformat()
            )
            | st.datetimes().map(datetime.isoformat)
            | json_values,
            "visitor": st.uuids().map(str) | json_values,
        },
    ),
    st.just({}) | st.just({}) | st.dictionaries(any_text, json_values, min_size=1, max_size=1),
).map(lambda parts: {**parts[0], **parts[1]})


def storable(event: dict[str, Any]) -> bool:
    """What both databases can store: UTF-8 text without NUL, finite numbers."""
    text = json.dumps(event, ensure_ascii=False, allow_nan=False)
    text.encode("utf-8")
    return "\\u0000" not in json.dumps(event)


@PROPERTIES
@given(raw=near_valid_events | json_values, server=st.booleans())
def test_clean_event_accepts_or_raises_invalid_event_only(raw: Any, server: bool) -> None:
    visitor = None if server else uuid.uuid4()
    try:
        event = clean_event(raw, visitor_id=visitor, allow_visitor_field=server, now=NOW)
    except InvalidEvent as exc:
        # The error names a field and says what is wrong, in text the API can render.
        assert isinstance(exc.field, str) and exc.message
        json.dumps({"field": exc.field, "message": exc.message}, ensure_ascii=False).encode()
        return
    assert set(event) == {
        "visitor",
        "kind",
        "item",
        "category",
        "value",
        "properties",
        "occurred_at",
    }
    assert event["kind"] in KINDS
    assert len(event["item"]) <= MAX_KEY_LENGTH and len(event["category"]) <= MAX_KEY_LENGTH
    assert event["value"] is None or isinstance(event["value"], float)
    assert storable(event)
    uuid.UUID(event["visitor"])
    when = datetime.fromisoformat(event["occurred_at"])
    assert NOW - timedelta(days=395) <= when <= NOW + timedelta(minutes=5)


key_text = st.text(
    st.characters(exclude_categories=("Cs",), exclude_characters="\x00"), max_size=MAX_KEY_LENGTH
)
plain_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**53), 2**53)
    | st.floats(allow_nan=False, allow_infinity=False)
    | key_text.map(lambda t: t[:20]),
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(key_text.map(lambda t: t[:10]), children, max_size=3)
    ),
    max_leaves=8,
)
valid_events = st.fixed_dictionaries(
    {"kind": st.sampled_from(KINDS)},
    optional={
        "item": key_text | st.integers(0, 10**12),
        "category": key_text,
        "value": st.floats(-1e12, 1e12, allow_nan=False) | st.integers(-(10**9), 10**9),
        "properties": st.dictionaries(key_text.map(lambda t: t[:10]), plain_json, max_size=4),
        "occurred_at": st.timedeltas(timedelta(0), timedelta(days=394)).map(
            lambda ago: (NOW - ago).isoformat()
        ),
    },
)


@PROPERTIES
@given(raw=valid_events)
def test_valid_events_are_accepted_unchanged_and_cleaning_is_idempotent(raw: dict) -> None:
    visitor = uuid.uuid4()
    event = clean_event(raw, visitor_id=visitor, now=NOW)
    assert event["visitor"] == str(visitor) and event["kind"] == raw["kind"]
    assert event["item"] == ("" if raw.get("item") is None else str(raw["item"]))
    assert event["category"] == raw.get("category", "")
    assert event["value"] == (None if raw.get("value") is None else float(raw["value"]))
    assert event["properties"] == raw.get("properties", {})
    if "occurred_at" in raw:
        assert datetime.fromisoformat(event["occurred_at"]) == datetime.fromisoformat(
            raw["occurred_at"]
        )
    # A clean event (as it waits in a buffer) passes validation again, unchanged.
    again = {k: v for k, v in event.items() if k != "visitor"}
    assert clean_event(again, visitor_id=visitor, now=NOW) == event
    # And it survives the JSON round trip of a Redis buffer.
    assert clean_event(json.loads(json.dumps(again)), visitor_id=visitor, now=NOW) == event


def as_json_numbers(value: Any) -> Any:
    """A JSON value with every number as a float: JSON has one kind of number, and
    PostgreSQL's jsonb keeps them as decimals (3.5e+16 comes back as the integer
    35000000000000000, the same JSON number)."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, list):
        return [as_json_numbers(v) for v in value]
    return {k: as_json_numbers(v) for k, v in value.items()}


def test_valid_events_round_trip_through_the_database() -> None:
    visitor = Visitor.objects.create()

    @settings(PROPERTIES, max_examples=40)
    @given(raws=st.lists(valid_events, min_size=1, max_size=4))
    def run(raws: list[dict]) -> None:
        now = datetime.now(UTC)
        fresh = [
            {**raw, "occurred_at": (now - (NOW - datetime.fromisoformat(raw["occurred_at"])))}
            if "occurred_at" in raw
            else raw
            for raw in raws
        ]
        events = [clean_event(raw, visitor_id=visitor.pk, now=now) for raw in fresh]
        Event.objects.all().delete()
        ingest.record(events)
        stored = list(Event.objects.order_by("id"))
        assert [
            {
                "visitor": str(e.visitor_id),
                "kind": e.kind,
                "item": e.item_key,
                "category": e.category_key,
                "value": e.value,
                "properties": as_json_numbers(e.properties),
                "occurred_at": e.occurred_at,
            }
            for e in stored
        ] == [
            {
                **e,
                "properties": as_json_numbers(e["properties"]),
                "occurred_at": datetime.fromisoformat(e["occurred_at"]),
            }
            for e in events
        ]

    run()


# Property tests: variant selection ---------------------------------------------------------

STATUSES = [s.value for s in Variant.Status]
variant_specs = st.lists(
    st.tuples(
        st.sampled_from(["home-hero", "other-slot"]),
        st.sampled_from(["runners", "cooks", "everyone"]),
        st.sampled_from(STATUSES),
        st.integers(0, 5000),  # impressions
        st.integers(0, 6000),  # clicks (more than impressions: a click not flushed yet)
    ),
    max_size=8,
)


class Shop:
    """Segments and two slots; each example replaces the variants."""

    def __init__(self) -> None:
        self.segments = {
            "everyone": ensure_everyone(),
            "runners": Segment.objects.create(key="runners", name="Runners"),
            "cooks": Segment.objects.create(key="cooks", name="Cooks"),
        }
        self.slots = {
            key: Slot.objects.create(key=key, name=key, sizes=[[600, 200]], link="/x/")
            for key in ("home-hero", "other-slot")
        }

    def reset(self, specs: list, *, fallback: dict, active: bool, cooks_active: bool) -> dict:
        """Replace the variants; return {(slot, segment): {approved ids}}."""
        Variant.objects.all().delete()
        Profile.objects.all().delete()
        Visitor.objects.all().delete()
        Slot.objects.filter(key="home-hero").update(fallback=fallback, active=active)
        Segment.objects.filter(key="cooks").update(active=cooks_active)
        approved: dict[tuple[str, str], set[int]] = {}
        for slot, segment, status, shown, clicked in specs:
            variant = Variant.objects.create(
                slot=self.slots[slot],
                segment=self.segments[segment],
                status=status,
                copy={"headline": f"{slot} {segment} {status}"},
                impressions=shown,
                clicks=clicked,
            )
            if status == Variant.Status.APPROVED:
                approved.setdefault((slot, segment), set()).add(variant.pk)
        cache.clear()
        delivery_cache.forget_local()
        return approved

    def visitor(self, segment: str | None) -> uuid.UUID:
        visitor = Visitor.objects.create()
        if segment is not None:
            Profile.objects.create(visitor=visitor, segment=self.segments[segment])
        return visitor.pk


def page_request(visitor_id: uuid.UUID | None) -> Any:
    from django.contrib.auth.models import AnonymousUser
    from django.test import RequestFactory

    request = RequestFactory().get("/page/")
    request.aigc_tracking = visitor_id is not None
    request.aigc_visitor_id = visitor_id
    request.user = AnonymousUser()
    return request


@pytest.fixture
def shop() -> Iterator[Shop]:
    yield Shop()
    cache.clear()
    delivery_cache.forget_local()


SELECTION = settings(PROPERTIES, max_examples=40)


def test_the_pick_is_an_approved_variant_of_the_slot_or_the_fallback(shop: Shop) -> None:
    @SELECTION
    @given(
        specs=variant_specs,
        segment=st.sampled_from(["runners", "cooks", None]),
        tracked=st.booleans(),
        fallback=st.sampled_from([{}, {"headline": "Fallback"}]),
        active=st.booleans(),
        cooks_active=st.booleans(),
        seed=st.integers(0, 2**32),
    )
    def run(specs, segment, tracked, fallback, active, cooks_active, seed) -> None:
        approved = shop.reset(specs, fallback=fallback, active=active, cooks_active=cooks_active)
        visitor_id = shop.visitor(segment) if tracked else None
        choice = selection.choose(page_request(visitor_id), "home-hero", random.Random(seed))

        # The visitor's segment counts when they are tracked and it is active.
        own = segment if tracked and segment and (segment != "cooks" or cooks_active) else None
        own_ids = approved.get(("home-hero", own or "everyone"), set())
        everyone_ids = approved.get(("home-hero", "everyone"), set())
        if not active or not (own_ids or everyone_ids):
            assert choice.variant is None
            assert choice.fallback == fallback and choice.is_empty == (not fallback)
        elif own_ids:
            assert choice.variant["id"] in own_ids
            assert choice.segment == (own or "everyone")
        else:
            assert choice.variant["id"] in everyone_ids and choice.segment == "everyone"
        if choice.variant is not None:
            assert choice.variant["slot"] == "home-hero"
            assert Variant.objects.get(pk=choice.variant["id"]).status == "approved"

    run()


def test_sticky_picks_hold_for_the_configured_time_while_approved(
    shop: Shop, monkeypatch: pytest.MonkeyPatch, aigc
) -> None:
    clock = [1_000_000.0]
    monkeypatch.setattr(selection, "time", types.SimpleNamespace(time=lambda: clock[0]))

    @SELECTION
    @given(
        counts=st.lists(
            st.tuples(st.integers(0, 3000), st.integers(0, 3000)), min_size=2, max_size=5
        ),
        # Long enough that the cache's own (real-time) expiry never comes first.
        sticky=st.integers(600, 7 * 86400),
        later=st.floats(0, 1, exclude_max=True),
        seeds=st.lists(st.integers(0, 2**32), min_size=3, max_size=3),
        reject=st.booleans(),
    )
    def run(counts, sticky, later, seeds, reject) -> None:
        aigc(DELIVERY={"STICKY_SECONDS": sticky, "IMPRESSION_BATCH_SECONDS": 0})
        specs = [("home-hero", "runners", "approved", i, c) for i, c in counts]
        approved = shop.reset(specs, fallback={}, active=True, cooks_active=True)
        ids = approved[("home-hero", "runners")]
        visitor_id = shop.visitor("runners")
        start = clock[0] = 1_000_000.0
        first = selection.choose(page_request(visitor_id), "home-hero", random.Random(seeds[0]))
        # Later pages within the sticky time show the same variant, whatever the draw.
        clock[0] = start + later * sticky
        for seed in seeds[1:]:
            again = selection.choose(page_request(visitor_id), "home-hero", random.Random(seed))
            assert again.variant["id"] == first.variant["id"]
        if reject:
            # A sticky pick that is no longer approved is replaced at once.
            Variant.objects.filter(pk=first.variant["id"]).update(status="rejected")
            delivery_cache.bump_version()
            delivery_cache.forget_local()
            after = selection.choose(page_request(visitor_id), "home-hero", random.Random(0))
            assert after.variant["id"] in ids - {first.variant["id"]}
        else:
            # After the sticky time the pick is drawn again (and is sticky again from then).
            clock[0] = start + sticky + 1
            redrawn = [
                selection.choose(page_request(visitor_id), "home-hero", random.Random(seed))
                for seed in seeds
            ]
            assert {c.variant["id"] for c in redrawn} == {redrawn[0].variant["id"]}
            remembered = cache.get(selection.sticky_key(visitor_id))["home-hero"]
            assert remembered == (redrawn[0].variant["id"], clock[0] + sticky)

    run()


def test_redrawing_after_the_sticky_time_is_a_fresh_draw(shop, monkeypatch, aigc) -> None:
    """Not stuck for ever: over many expiries a visitor sees more than one variant."""
    clock = [1_000_000.0]
    monkeypatch.setattr(selection, "time", types.SimpleNamespace(time=lambda: clock[0]))
    aigc(DELIVERY={"STICKY_SECONDS": 60, "IMPRESSION_BATCH_SECONDS": 0})
    shop.reset(
        [("home-hero", "runners", "approved", 0, 0)] * 3,
        fallback={},
        active=True,
        cooks_active=True,
    )
    visitor_id = shop.visitor("runners")
    rng = random.Random(5)
    seen = set()
    for _ in range(30):
        clock[0] += 61
        seen.add(selection.choose(page_request(visitor_id), "home-hero", rng).variant["id"])
    assert len(seen) > 1


@PROPERTIES
@given(
    impressions=st.integers(300, 100_000),
    worse=st.floats(0.0, 0.5),
    gap=st.floats(0.05, 0.5),
    others=st.integers(0, 3),
    seed=st.integers(0, 2**32),
)
def test_thompson_sampling_favours_a_clearly_better_click_through(
    impressions, worse, gap, others, seed
) -> None:
    better = min(worse + gap, 1.0)
    # "Clearly": the gap is four standard deviations of the two posteriors together.
    spread = ((better * (1 - better) + worse * (1 - worse)) / impressions) ** 0.5
    if better - worse < 4 * spread:
        return
    counts = {1: (impressions, round(impressions * worse))}
    counts[2] = (impressions, round(impressions * better))
    for arm in range(3, 3 + others):
        counts[arm] = (impressions, round(impressions * worse))
    rng = random.Random(seed)
    ids = list(counts)
    picks = [bandit.thompson_pick(ids, counts, rng) for _ in range(200)]
    assert picks.count(2) >= 0.9 * len(picks)
    # And any pick at all is one of the candidates, whatever the counts.
    assert set(picks) <= set(ids)


@PROPERTIES
@given(
    counts=st.dictionaries(
        st.integers(1, 50),
        st.tuples(st.integers(-10, 10**9), st.integers(-10, 10**9)),
        min_size=1,
        max_size=6,
    ),
    seed=st.integers(0, 2**32),
)
def test_thompson_pick_returns_a_candidate_whatever_the_counts(counts, seed) -> None:
    ids = list(counts)
    assert bandit.thompson_pick(ids, counts, random.Random(seed)) in ids
    candidates = [{"id": i, "impressions": n, "clicks": c} for i, (n, c) in counts.items()]
    assert selection.pick(candidates, random.Random(seed)) in ids
