"""The visitor cookie, consent, bots, the lazy visitor, merge on login, and track()."""

from __future__ import annotations

import uuid
from datetime import timedelta
from decimal import Decimal

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from aigc_django import track
from aigc_django.exceptions import InvalidEvent
from aigc_django.models import Event, Visitor
from tests.conftest import BROWSER_UA
from tests.shopapp.models import Category, Product

pytestmark = pytest.mark.django_db


@pytest.fixture
def product() -> Product:
    shoes = Category.objects.create(slug="shoes", name="Shoes")
    return Product.objects.create(
        sku="SH-1", name="Trail runner", price=Decimal("89.90"), category=shoes
    )


def visitor_cookie(response) -> str | None:
    cookie = response.cookies.get("aigc_vid")
    return cookie.value if cookie is not None and cookie.value else None


def test_new_visitor_gets_a_signed_cookie_and_the_event(browser, product):
    response = browser.get("/product/SH-1/")
    assert response.json()["tracked"] is True
    raw = visitor_cookie(response)
    assert raw is not None
    cookie = response.cookies["aigc_vid"]
    assert cookie["httponly"] and cookie["samesite"] == "Lax"
    event = Event.objects.get()
    assert (event.kind, event.item_key, event.category_key) == ("product_view", "SH-1", "shoes")
    # The cookie is signed: its value is the visitor id plus a signature.
    assert raw.startswith(str(event.visitor_id))
    assert raw != str(event.visitor_id)


def test_returning_visitor_keeps_the_id_and_gets_no_new_cookie(browser, product):
    first = browser.get("/product/SH-1/")
    second = browser.get("/product/SH-1/")
    assert visitor_cookie(first) is not None
    assert "aigc_vid" not in second.cookies
    assert Event.objects.values("visitor_id").distinct().count() == 1
    assert Visitor.objects.count() == 1


def test_forged_cookie_is_replaced(browser, product):
    forged = str(uuid.uuid4())
    browser.cookies["aigc_vid"] = forged
    response = browser.get("/product/SH-1/")
    assert visitor_cookie(response) is not None
    assert str(Event.objects.get().visitor_id) != forged


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        ({"DNT": "1"}, "do not track"),
        ({"Sec-GPC": "1"}, "global privacy control"),
        ({"User-Agent": "Googlebot/2.1 (+http://www.google.com/bot.html)"}, "bot"),
        ({"User-Agent": "curl/8.5.0"}, "script"),
        ({"User-Agent": ""}, "no user agent"),
    ],
)
def test_untracked_requests_get_no_cookie_and_no_events(product, headers, reason):
    client = Client(headers={"User-Agent": BROWSER_UA, **headers})
    response = client.get("/product/SH-1/")
    assert response.json()["tracked"] is False, reason
    assert "aigc_vid" not in response.cookies
    assert Event.objects.count() == 0
    assert Visitor.objects.count() == 0


def test_dnt_can_be_switched_off(aigc, product):
    aigc(HONOR_DO_NOT_TRACK=False)
    client = Client(headers={"User-Agent": BROWSER_UA, "DNT": "1"})
    assert client.get("/product/SH-1/").json()["tracked"] is True


def test_implied_consent_stops_when_the_visitor_says_no(browser, product):
    browser.cookies["aigc_consent"] = "denied"
    assert browser.get("/product/SH-1/").json()["tracked"] is False
    browser.cookies["aigc_consent"] = "granted"
    assert browser.get("/product/SH-1/").json()["tracked"] is True


def test_required_consent_tracks_only_after_yes(aigc, browser, product):
    aigc(CONSENT={"MODE": "required"})
    response = browser.get("/product/SH-1/")
    assert response.json()["tracked"] is False
    assert "aigc_vid" not in response.cookies
    browser.cookies["aigc_consent"] = "1"
    response = browser.get("/product/SH-1/")
    assert response.json()["tracked"] is True
    assert visitor_cookie(response) is not None
    assert Event.objects.count() == 1


def consent_from_header(request):
    """A project's own consent check: a header set by its consent banner."""
    answer = request.headers.get("X-Consent")
    return None if answer is None else answer == "yes"


def test_required_consent_through_a_callable(aigc, browser, product):
    aigc(CONSENT={"MODE": "required", "CHECK": "tests.test_tracking.consent_from_header"})
    assert browser.get("/product/SH-1/").json()["tracked"] is False
    assert browser.get("/product/SH-1/", headers={"X-Consent": "yes"}).json()["tracked"] is True
    assert browser.get("/product/SH-1/", headers={"X-Consent": "no"}).json()["tracked"] is False


def test_pages_that_never_use_the_visitor_run_no_query(browser):
    with CaptureQueriesContext(connection) as queries:
        response = browser.get("/plain/")
    assert response.content == b"plain"
    assert len(queries) == 0
    assert visitor_cookie(response) is not None


def test_request_visitor_is_created_on_first_use(browser):
    response = browser.get("/visitor/")
    visitor_id = response.json()["visitor"]
    assert Visitor.objects.filter(id=visitor_id).exists()
    assert visitor_cookie(response).startswith(visitor_id)


def test_login_merges_the_anonymous_visitor_into_the_users(product):
    User.objects.create_user("ada", password="pw")
    # The user's earlier device.
    laptop = Client(headers={"User-Agent": BROWSER_UA})
    laptop.get("/product/SH-1/")
    assert laptop.post("/login/", {"username": "ada", "password": "pw"}).status_code == 200
    user_visitor = Visitor.objects.get(user__username="ada")

    # A new device browses anonymously, then logs in.
    phone = Client(headers={"User-Agent": BROWSER_UA})
    phone.get("/product/SH-1/")
    phone.get("/product/SH-1/")
    anonymous_id = Event.objects.exclude(visitor=user_visitor).values_list("visitor_id", flat=True)[
        0
    ]
    response = phone.post("/login/", {"username": "ada", "password": "pw"})
    assert visitor_cookie(response).startswith(str(user_visitor.pk))
    assert Event.objects.filter(visitor=user_visitor).count() == 3
    assert Visitor.objects.get(pk=anonymous_id).merged_into_id == user_visitor.pk

    # The phone now carries the user's visitor.
    phone.get("/product/SH-1/")
    assert Event.objects.filter(visitor=user_visitor).count() == 4


def test_track_records_keys_value_and_properties(product):
    visitor = uuid.uuid4()
    when = timezone.now() - timedelta(hours=1)
    assert track(
        None,
        "add_to_cart",
        item=product,
        value=Decimal("89.90"),
        properties={"quantity": 1},
        occurred_at=when,
        visitor=visitor,
    )
    assert track(None, "search", properties={"query": "boots"}, visitor=visitor)
    assert track(None, "category_view", category="shoes", visitor=visitor)
    assert track(None, "newsletter_signup", visitor=visitor)
    cart, search, category, custom = Event.objects.order_by("id")
    assert (cart.item_key, cart.category_key, cart.value) == ("SH-1", "shoes", 89.9)
    assert cart.properties == {"quantity": 1} and cart.occurred_at == when
    assert search.properties == {"query": "boots"}
    assert category.category_key == "shoes" and category.item_key == ""
    assert custom.kind == "newsletter_signup"
    assert Visitor.objects.get().last_seen >= when


def test_track_raises_for_an_unknown_kind(product):
    with pytest.raises(InvalidEvent, match="kind"):
        track(None, "product_veiw", item=product, visitor=uuid.uuid4())
    assert Event.objects.count() == 0


def test_track_drops_events_with_bad_visitor_input_and_logs(caplog):
    long_query = {"query": "x" * 10_000}
    assert track(None, "search", properties=long_query, visitor=uuid.uuid4()) is False
    assert track(None, "purchase", value="a lot", visitor=uuid.uuid4()) is False
    assert Event.objects.count() == 0
    assert "Dropped a search event: properties" in caplog.text


def test_track_with_a_malformed_visitor_id_records_nothing():
    assert track(None, "page_view", visitor="not-a-uuid") is False
    assert Event.objects.count() == 0


def test_track_adds_device_and_external_referrer(browser, product):
    browser.get("/product/SH-1/", headers={"Referer": "https://www.search.example/q?boots"})
    browser.get("/product/SH-1/", headers={"Referer": "http://testserver/home/"})
    first, second = Event.objects.order_by("id")
    assert first.properties == {"device": "desktop", "referrer": "www.search.example"}
    assert second.properties == {"device": "desktop"}


def test_a_shared_browser_never_hands_history_to_another_account(product):
    User.objects.create_user("ann", password="pw")
    User.objects.create_user("bob", password="pw")
    browser = Client(headers={"User-Agent": BROWSER_UA})
    browser.post("/login/", {"username": "ann", "password": "pw"})
    browser.get("/product/SH-1/")
    ann = Visitor.objects.get(user__username="ann")
    browser.post("/logout/")
    browser.get("/product/SH-1/")  # someone else, anonymous now
    browser.post("/login/", {"username": "bob", "password": "pw"})
    browser.get("/product/SH-1/")
    bob = Visitor.objects.get(user__username="bob")
    assert ann.pk != bob.pk
    assert Event.objects.filter(visitor=ann).count() == 1
    assert Event.objects.filter(visitor=bob).count() == 2


def test_logging_in_again_on_a_browser_that_carries_another_users_visitor():
    from aigc_django.tracking.visitors import merge_into_user

    ann = User.objects.create_user("ann")
    bob = User.objects.create_user("bob")
    anns = Visitor.objects.create(user=ann)
    bobs = Visitor.objects.create(user=bob)
    assert merge_into_user(anns.pk, bob) == bobs.pk
    fresh = merge_into_user(bobs.pk, User.objects.create_user("cy"))
    assert fresh not in (anns.pk, bobs.pk)
    assert Visitor.objects.get(pk=fresh).user.username == "cy"


def test_track_without_request_or_visitor_records_nothing(product):
    assert track(None, "product_view", item=product) is False
    assert Event.objects.count() == 0


def test_cookie_settings_are_honoured(aigc, browser):
    aigc(VISITOR_COOKIE={"NAME": "vid", "SECURE": True, "SAMESITE": "Strict", "AGE": 3600})
    response = browser.get("/plain/")
    cookie = response.cookies["vid"]
    assert cookie["secure"] and cookie["samesite"] == "Strict" and cookie["max-age"] == 3600
