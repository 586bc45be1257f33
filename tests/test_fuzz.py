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
from schemathesis.core import NOT_SET

from aigc_django.delivery import cache as delivery_cache
from aigc_django.delivery import clicks
from aigc_django.models import Event, Profile, Segment, Slot, Variant, Visitor
from aigc_django.profiles.build import ensure_everyone
from tests.conftest import BROWSER_UA

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parent.parent
DOCUMENTED = schemathesis.openapi.from_path(ROOT / "docs" / "openapi.yaml")
TOKEN = "server-token-for-tests-0123456789abcdef"  # AIGC["API"]["TOKENS"] in tests/settings.py

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


def fuzz(schema: Any, client: Client, label: str) -> list[int]:
    """Run the schema's strategy for one operation; return the statuses seen."""
    operation = schema[label.split(" ", 1)[1]][label.split(" ", 1)[0]]
    allowed = documented_statuses(operation)
    seen: list[int] = []

    @given(case=operation.as_strategy())
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


def plain_views_schema(world: World) -> Any:
    raw = copy.deepcopy(PLAIN_VIEWS)
    token = raw["paths"]["/aigc/r/{token}/"]["get"]["parameters"][0]
    token["schema"] = {"anyOf": [{"enum": [world.click_token]}, {"type": "string"}]}
    return schemathesis.openapi.from_dict(raw)


@pytest.mark.parametrize("caller", ["new-browser", "visitor", "staff", "bot"])
@pytest.mark.parametrize("label", ["GET /aigc/api/slots/{key}/", "GET /aigc/r/{token}/"])
def test_no_plain_view_answers_5xx(world: World, caller: str, label: str) -> None:
    fuzz(plain_views_schema(world), CALLERS[caller](world), label)


def deep_schema(world: World) -> Any:
    """docs/openapi.yaml with bodies that pass the first checks: events of real kinds with
    typed fields, impressions of real variant ids and real click tokens."""
    from aigc_django.tracking.events import allowed_kinds

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
            "value": {"type": "number"},
            "properties": {"type": "object"},
            "occurred_at": {"anyOf": [{"enum": when}, {"type": "string", "format": "date-time"}]},
            "visitor": {"anyOf": [{"type": "string", "format": "uuid"}, {"type": "string"}]},
        },
    }
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
    statuses = fuzz(deep_schema(world), CALLERS[caller](world), label)
    # The tight schema gets past validation: some requests were accepted.
    assert 202 in statuses, statuses


# Regressions: 5xx the fuzzing found ---------------------------------------------------------

SERVER_VISITOR = "9b2f0a3e-8f7e-4c55-9d3c-2f9b1f1f4a11"


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
