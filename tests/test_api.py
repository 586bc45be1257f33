"""POST /aigc/api/events/ and the visitor's own data at /aigc/api/me/."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from django.core.cache import cache
from django.test import Client

from aigc_django.models import Event, Visitor
from tests.conftest import BROWSER_UA

pytestmark = pytest.mark.django_db

URL = "/aigc/api/events/"
TOKEN = "server-token-for-tests-0123456789abcdef"


def post(client: Client, body, **extra):
    data = body if isinstance(body, bytes | str) else json.dumps(body)
    return client.post(URL, data=data, content_type="application/json", **extra)


@pytest.fixture
def csrf_browser() -> Client:
    """A browser that sends the CSRF token like the tracking script does."""
    client = Client(enforce_csrf_checks=True, headers={"User-Agent": BROWSER_UA})
    client.get("/plain/")  # gets the visitor cookie
    client.cookies["csrftoken"] = "a" * 32
    client.defaults["HTTP_X_CSRFTOKEN"] = "a" * 32
    return client


def good_events(count: int = 3) -> list[dict]:
    return [
        {
            "kind": "product_view",
            "item": f"SKU-{i}",
            "category": "shoes",
            "properties": {"position": i},
            "occurred_at": (datetime.now(UTC) - timedelta(minutes=i)).isoformat(),
        }
        for i in range(count)
    ]


def test_browser_batch_is_stored_for_the_cookie_visitor(csrf_browser):
    response = post(csrf_browser, good_events(3))
    assert response.status_code == 202, response.content
    assert response.json() == {"accepted": 3}
    assert Event.objects.count() == 3
    assert Event.objects.values("visitor_id").distinct().count() == 1
    assert Event.objects.get(item_key="SKU-2").properties == {"position": 2}


def test_events_wrapper_and_custom_kinds_are_accepted(csrf_browser):
    body = {"events": [{"kind": "newsletter_signup"}, {"kind": "purchase", "value": 12.5}]}
    assert post(csrf_browser, body).status_code == 202
    assert sorted(Event.objects.values_list("kind", flat=True)) == ["newsletter_signup", "purchase"]


def test_browser_batch_without_csrf_token_is_refused(csrf_browser):
    del csrf_browser.defaults["HTTP_X_CSRFTOKEN"]
    response = post(csrf_browser, good_events(1))
    assert response.status_code == 403
    assert Event.objects.count() == 0


@pytest.mark.parametrize(
    ("event", "field"),
    [
        ({"kind": "teleport"}, "kind"),
        ({}, "kind"),
        ({"kind": 3}, "kind"),
        ({"kind": "search", "value": "12"}, "value"),
        ({"kind": "search", "value": True}, "value"),
        ({"kind": "search", "properties": [1, 2]}, "properties"),
        ({"kind": "search", "properties": {"x": "y" * 5000}}, "properties"),
        ({"kind": "search", "occurred_at": "yesterday"}, "occurred_at"),
        ({"kind": "search", "occurred_at": "2999-01-01T00:00:00Z"}, "occurred_at"),
        ({"kind": "search", "occurred_at": "1999-01-01T00:00:00Z"}, "occurred_at"),
        ({"kind": "search", "item": "x" * 129}, "item"),
        ({"kind": "search", "category": {"a": 1}}, "category"),
        ({"kind": "search", "visitor": str(uuid.uuid4())}, "visitor"),
        ({"kind": "search", "colour": "red"}, "colour"),
        ({"kind": "search", "properties": {"x": float("nan")}}, "properties"),
        ({"kind": "search", "properties": {"x": "a\u0000b"}}, "properties"),
        ({"kind": "search", "item": "a\u0000b"}, "item"),
        ("product_view", ""),
    ],
)
def test_an_invalid_event_is_reported_with_index_and_field_and_nothing_is_stored(
    csrf_browser, event, field
):
    response = post(csrf_browser, [*good_events(2), event, *good_events(1)])
    assert response.status_code == 400
    body = response.json()
    assert body["errors"] == [{"index": 2, "field": field, "message": body["errors"][0]["message"]}]
    assert body["errors"][0]["message"]
    assert Event.objects.count() == 0
    assert Visitor.objects.count() == 0


def test_every_invalid_event_is_reported(csrf_browser):
    response = post(
        csrf_browser, [{"kind": "nope"}, *good_events(1), {"kind": "search", "value": "x"}]
    )
    assert [(e["index"], e["field"]) for e in response.json()["errors"]] == [
        (0, "kind"),
        (2, "value"),
    ]


@pytest.mark.parametrize("body", [b"{not json", b'"a string"', b'{"kind": "search"}', b"\xff\xfe"])
def test_malformed_bodies_are_refused(csrf_browser, body):
    response = post(csrf_browser, body)
    assert response.status_code == 400
    assert response.json()["error"]
    assert Event.objects.count() == 0


def test_too_many_events_is_413(aigc, csrf_browser):
    aigc(API={"MAX_EVENTS_PER_BATCH": 5, "INGEST_RATE": None})
    response = post(csrf_browser, good_events(6))
    assert response.status_code == 413
    assert "limit is 5" in response.json()["error"]
    assert Event.objects.count() == 0


def test_too_many_bytes_is_413(aigc, csrf_browser):
    aigc(API={"MAX_REQUEST_BYTES": 2000, "INGEST_RATE": None})
    response = post(csrf_browser, good_events(40))
    assert response.status_code == 413
    assert Event.objects.count() == 0


def test_throttled_visitor_gets_429(aigc, csrf_browser):
    cache.clear()
    aigc(API={"INGEST_RATE": "3/min"})
    codes = [post(csrf_browser, good_events(1)).status_code for _ in range(5)]
    assert codes == [202, 202, 202, 429, 429]
    assert Event.objects.count() == 3
    # Another visitor has a budget of their own.
    other = Client(headers={"User-Agent": BROWSER_UA})
    assert post(other, good_events(1)).status_code == 202
    cache.clear()


def test_server_to_server_with_a_token_names_the_visitor():
    client = Client()  # no browser, no cookie, no CSRF
    visitor = uuid.uuid4()
    events = [{**e, "visitor": str(visitor)} for e in good_events(2)]
    response = post(client, events, HTTP_AUTHORIZATION=f"Token {TOKEN}")
    assert response.status_code == 202
    assert set(Event.objects.values_list("visitor_id", flat=True)) == {visitor}


def test_server_to_server_event_without_visitor_is_refused():
    response = post(Client(), good_events(1), HTTP_AUTHORIZATION=f"Token {TOKEN}")
    assert response.status_code == 400
    assert response.json()["errors"][0]["field"] == "visitor"


def test_other_authorization_schemes_are_left_alone(csrf_browser):
    # The Basic auth of a password-protected staging site is not a token.
    response = post(csrf_browser, good_events(1), HTTP_AUTHORIZATION="Basic dXNlcjpwYXNz")
    assert response.status_code == 202


def test_clients_that_drop_cookies_are_throttled_by_address(aigc):
    cache.clear()
    aigc(API={"INGEST_RATE": "3/min"})
    codes = [
        post(Client(headers={"User-Agent": BROWSER_UA}), good_events(1)).status_code
        for _ in range(5)
    ]
    assert codes == [202, 202, 202, 429, 429]
    cache.clear()


@pytest.mark.parametrize("num_proxies", [None, 1])
def test_a_forged_forwarded_for_does_not_escape_the_address_limit(aigc, settings, num_proxies):
    # DRF's default (NUM_PROXIES None) would take the whole X-Forwarded-For header as the
    # address; a client changing it per request would get a fresh budget every time. With
    # one trusted proxy the address is the hop the proxy appended (the same here).
    settings.REST_FRAMEWORK = {
        **getattr(settings, "REST_FRAMEWORK", {}),
        "NUM_PROXIES": num_proxies,
    }
    cache.clear()
    aigc(API={"INGEST_RATE": "2/min"})
    codes = [
        post(
            Client(headers={"User-Agent": BROWSER_UA}),
            good_events(1),
            HTTP_X_FORWARDED_FOR=f"10.0.0.{n}, 192.0.2.7" if num_proxies else f"10.0.0.{n}",
        ).status_code
        for n in range(4)
    ]
    assert codes == [202, 202, 429, 429]
    cache.clear()


def test_behind_a_trusted_proxy_each_client_address_has_its_own_budget(aigc, settings):
    settings.REST_FRAMEWORK = {**getattr(settings, "REST_FRAMEWORK", {}), "NUM_PROXIES": 1}
    cache.clear()
    aigc(API={"INGEST_RATE": "1/min"})
    codes = [
        post(
            Client(headers={"User-Agent": BROWSER_UA}),
            good_events(1),
            HTTP_X_FORWARDED_FOR=f"198.51.100.{n}",
        ).status_code
        for n in (1, 2, 1)
    ]
    assert codes == [202, 202, 429]
    cache.clear()


def test_fresh_visitor_cookies_do_not_escape_the_address_limit(aigc):
    cache.clear()
    aigc(API={"INGEST_RATE": "100/min", "INGEST_RATE_PER_ADDRESS": "2/min"})
    codes = []
    for _ in range(4):
        client = Client(headers={"User-Agent": BROWSER_UA})
        client.get("/plain/")  # a new visitor cookie each time
        codes.append(post(client, good_events(1)).status_code)
    assert codes == [202, 202, 429, 429]
    cache.clear()


def test_a_wrong_token_is_401():
    events = [{**e, "visitor": str(uuid.uuid4())} for e in good_events(1)]
    response = post(Client(), events, HTTP_AUTHORIZATION="Token wrong")
    assert response.status_code == 401
    assert Event.objects.count() == 0


def test_do_not_track_browser_is_accepted_but_not_stored():
    client = Client(headers={"User-Agent": BROWSER_UA, "DNT": "1"})
    response = post(client, good_events(2))
    assert response.status_code == 202 and response.json() == {"accepted": 0}
    assert Event.objects.count() == 0
    assert "aigc_vid" not in response.cookies


def test_visitor_exports_and_erases_their_own_data(csrf_browser):
    post(csrf_browser, good_events(3))
    other = Client(headers={"User-Agent": BROWSER_UA})
    post(other, good_events(2))

    export = csrf_browser.get("/aigc/api/me/")
    assert export.status_code == 200
    assert export["Cache-Control"] == "private, no-store"
    data = export.json()
    assert len(data["events"]) == 3
    assert {e["item"] for e in data["events"]} == {"SKU-0", "SKU-1", "SKU-2"}

    erased = csrf_browser.delete("/aigc/api/me/")
    assert erased.status_code == 200
    assert erased.json()["erased"] == {"visitors": 1, "events": 3}
    assert erased.cookies["aigc_vid"].value == ""
    assert Event.objects.count() == 2  # the other visitor's
    assert Visitor.objects.count() == 1


def test_erase_needs_the_csrf_token(csrf_browser):
    post(csrf_browser, good_events(1))
    del csrf_browser.defaults["HTTP_X_CSRFTOKEN"]
    assert csrf_browser.delete("/aigc/api/me/").status_code == 403
    assert Event.objects.count() == 1


def test_export_is_json_even_for_a_browser_asking_for_html(csrf_browser):
    post(csrf_browser, good_events(1))
    response = csrf_browser.get("/aigc/api/me/", headers={"Accept": "text/html,*/*"})
    assert response["Content-Type"] == "application/json"
    assert len(response.json()["events"]) == 1


def test_export_without_data_is_404(browser):
    assert browser.get("/aigc/api/me/").status_code == 404
