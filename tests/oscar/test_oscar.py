"""aigc_django.contrib.oscar against a real django-oscar install (tests.settings_oscar)."""

from __future__ import annotations

import logging
import uuid
from decimal import Decimal

import pytest
from django.core.checks import run_checks
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client, RequestFactory
from django.urls import reverse
from oscar.apps.checkout.signals import post_checkout
from oscar.core.loading import get_model
from oscar.test.factories import create_order

from aigc_django.catalog import get_catalog
from aigc_django.contrib.oscar import receivers
from aigc_django.contrib.oscar.catalog import OSCAR_CATALOG
from aigc_django.contrib.oscar.receivers import track_order
from aigc_django.models import Event, Visitor

Product = get_model("catalogue", "Product")
ProductClass = get_model("catalogue", "ProductClass")
ProductImage = get_model("catalogue", "ProductImage")
Category = get_model("catalogue", "Category")
Partner = get_model("partner", "Partner")
StockRecord = get_model("partner", "StockRecord")
Country = get_model("address", "Country")

pytestmark = pytest.mark.django_db

# One pixel of PNG: enough for Oscar's thumbnailer.
PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360f8cf000000030101005f5ee8e90000000049454e44ae426082"
)


@pytest.fixture
def shop(settings, tmp_path) -> dict:
    """Books > Fiction; a novel in both, with a stock record and an image; a T-shirt
    parent with two sized children; a hidden product; a partner."""
    settings.MEDIA_ROOT = str(tmp_path)
    books = Category.add_root(name="Books", slug="books")
    fiction = books.add_child(name="Fiction", slug="fiction")
    clothes = Category.add_root(name="Clothes", slug="clothes")
    product_class = ProductClass.objects.create(name="Things", track_stock=False)
    partner = Partner.objects.create(name="Warehouse")

    novel = Product.objects.create(
        title="A Long Novel", description="Five hundred pages.", product_class=product_class
    )
    novel.categories.add(books, fiction)
    StockRecord.objects.create(
        product=novel, partner=partner, partner_sku="novel", price=Decimal("12.50")
    )
    ProductImage.objects.create(
        product=novel, original=SimpleUploadedFile("novel.png", PNG, content_type="image/png")
    )

    shirt = Product.objects.create(
        title="T-shirt", structure=Product.PARENT, product_class=product_class
    )
    shirt.categories.add(clothes)
    children = []
    for size, price in (("M", "30.00"), ("S", "20.00")):
        child = Product.objects.create(title=f"T-shirt {size}", structure="child", parent=shirt)
        StockRecord.objects.create(
            product=child, partner=partner, partner_sku=f"shirt-{size}", price=Decimal(price)
        )
        children.append(child)

    hidden = Product.objects.create(title="Hidden", is_public=False, product_class=product_class)
    return {
        "books": books,
        "fiction": fiction,
        "novel": novel,
        "shirt": shirt,
        "shirt_m": children[0],
        "hidden": hidden,
        "partner": partner,
    }


def events(kind: str) -> list[Event]:
    return list(Event.objects.filter(kind=kind).order_by("id"))


def test_checks_accept_the_oscar_mapping(settings):
    messages = [m for m in run_checks() if m.id and m.id.startswith("aigc_django.")]
    assert [m.id for m in messages if m.level >= 40] == []
    broken = {**OSCAR_CATALOG, "FIELDS": {**OSCAR_CATALOG["FIELDS"], "price": "cost"}}
    settings.AIGC = {**settings.AIGC, "CATALOG": broken}
    assert "aigc_django.E003" in [m.id for m in run_checks()]


def test_catalog_lists_browsable_products_with_price_category_image_and_url(shop):
    items = {item.key: item for item in get_catalog().items()}

    novel, shirt = shop["novel"], shop["shirt"]
    assert set(items) == {str(novel.pk), str(shirt.pk)}  # no children, nothing hidden
    item = items[str(novel.pk)]
    assert item.title == "A Long Novel"
    assert item.description == "Five hundred pages."
    assert item.price == 12.5
    assert item.category == "books/fiction"  # the deepest of its categories
    assert item.image_url.startswith("/media/images/products/")
    assert item.url == novel.get_absolute_url()
    # A parent is priced at its cheapest child and has no image of its own.
    assert items[str(shirt.pk)].price == 20.0
    assert items[str(shirt.pk)].category == "clothes"
    assert items[str(shirt.pk)].image_url == ""
    # Keys look products up, and a product read on its own reads the same as in bulk.
    assert get_catalog().get(str(novel.pk)) == item
    assert [i.key for i in get_catalog().items([str(shirt.pk)])] == [str(shirt.pk)]


def test_product_page_is_tracked_as_a_product_view(shop, browser):
    response = browser.get(shop["novel"].get_absolute_url())
    assert response.status_code == 200

    (event,) = events("product_view")
    assert (event.item_key, event.category_key) == (str(shop["novel"].pk), "books/fiction")
    assert event.properties["device"] == "desktop"


def test_child_product_page_counts_as_its_parent(shop, browser):
    response = browser.get(shop["shirt_m"].get_absolute_url())
    assert response.status_code == 200

    (event,) = events("product_view")
    assert (event.item_key, event.category_key) == (str(shop["shirt"].pk), "clothes")


def test_visitor_who_asks_not_to_be_tracked_leaves_no_event(shop, browser):
    response = browser.get(shop["novel"].get_absolute_url(), headers={"DNT": "1"})
    assert response.status_code == 200
    assert Event.objects.count() == 0


def test_basket_addition_is_tracked_with_the_value_added(shop, browser):
    response = browser.post(reverse("basket:add", kwargs={"pk": shop["novel"].pk}), {"quantity": 2})
    assert response.status_code == 302

    (event,) = events("add_to_cart")
    assert event.item_key == str(shop["novel"].pk)
    assert event.value == 25.0
    assert event.properties["quantity"] == 2
    # The same visitor as the page views of this browser.
    browser.get(shop["novel"].get_absolute_url())
    assert events("product_view")[0].visitor_id == event.visitor_id


def test_search_is_tracked_once_per_query(shop, browser):
    url = reverse("search:search")
    assert browser.get(url, {"q": "  novel "}).status_code == 200
    browser.get(url, {"q": "novel", "page": "2"})  # the same search, paged (a 404 here)
    assert browser.get(url, {"q": ""}).status_code == 200

    assert [e.properties["query"] for e in events("search")] == ["novel"]


def test_category_page_is_tracked_by_the_tracked_view(shop, browser):
    fiction = shop["fiction"]
    assert browser.get(fiction.get_absolute_url()).status_code == 200
    # A stale slug redirects to the right URL: that response is not a view of the page.
    stale = reverse("catalogue:category", kwargs={"category_slug": "old", "pk": fiction.pk})
    assert browser.get(stale).status_code == 301

    (event,) = events("category_view")
    assert event.category_key == "books/fiction"


def test_checkout_records_a_purchase_per_line(shop):
    order = create_order(number="100001")
    line = order.lines.get()
    request = RequestFactory().get("/checkout/thank-you/")
    request.aigc_visitor_id = visitor_id = uuid.uuid4()

    post_checkout.send(sender=None, order=order, user=None, request=request, response=None)

    (event,) = events("purchase")
    assert event.visitor_id == visitor_id
    assert event.item_key == str(line.product.pk)
    assert event.value == float(line.line_price_incl_tax) == 10.0
    assert event.properties["order"] == "100001"
    assert event.properties["quantity"] == 1


def test_order_without_a_request_belongs_to_the_users_visitor(shop, django_user_model):
    user = django_user_model.objects.create_user("ann", "ann@example.com", "pw")
    visitor = Visitor.objects.create(user=user)
    order = create_order(number="100002", user=user)

    assert track_order(order) == 1
    assert events("purchase")[0].visitor_id == visitor.pk
    # A guest order has no visitor to belong to.
    assert track_order(create_order(number="100003")) == 0


def test_real_checkout_records_the_purchase(shop, browser, django_user_model):
    """Oscar's own checkout views, from the basket to the thank-you page."""
    Country.objects.create(
        iso_3166_1_a2="GB", iso_3166_1_a3="GBR", name="United Kingdom", is_shipping_country=True
    )
    django_user_model.objects.create_user("bob", "bob@example.com", "secret-pw")
    assert browser.login(username="bob@example.com", password="secret-pw")
    browser.post(reverse("basket:add", kwargs={"pk": shop["novel"].pk}), {"quantity": 3})
    response = browser.post(
        reverse("checkout:shipping-address"),
        {
            "first_name": "Bob",
            "last_name": "Reader",
            "line1": "1 High Street",
            "line4": "London",
            "postcode": "N1 9GU",
            "country": "GB",
        },
        follow=True,
    )
    assert response.status_code == 200
    response = browser.post(reverse("checkout:preview"), {"action": "place_order"}, follow=True)
    assert response.status_code == 200

    order = get_model("order", "Order").objects.get()
    (event,) = events("purchase")
    assert event.item_key == str(shop["novel"].pk)
    assert event.value == 37.5
    assert event.properties == {
        "order": order.number,
        "quantity": 3,
        "device": "desktop",
    }
    assert event.visitor_id == events("add_to_cart")[0].visitor_id


def test_a_failing_receiver_does_not_break_the_page(shop, browser, monkeypatch, caplog):
    def broken_track(*args, **kwargs):
        raise RuntimeError("tracking is down")

    monkeypatch.setattr(receivers, "track", broken_track)
    with caplog.at_level(logging.ERROR, logger="aigc_django.contrib.oscar"):
        response = browser.get(shop["novel"].get_absolute_url())
        added = browser.post(
            reverse("basket:add", kwargs={"pk": shop["novel"].pk}), {"quantity": 1}
        )

    assert response.status_code == 200
    assert added.status_code == 302
    assert "tracking is down" in caplog.text
    assert caplog.text.count("Tracking failed") == 2


def test_client_without_user_agent_is_not_tracked(shop):
    # No User-Agent reads as a bot: Oscar still serves the page, nothing is recorded.
    assert Client().get(shop["novel"].get_absolute_url()).status_code == 200
    assert Event.objects.count() == 0
