"""The catalog adapter over the host project's product model."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.core.files.base import ContentFile
from django.test import override_settings

from aigc_django.catalog import CatalogItem, get_catalog
from tests.shopapp.models import Category, Product

pytestmark = pytest.mark.django_db


@pytest.fixture
def products(settings, tmp_path):
    settings.MEDIA_ROOT = str(tmp_path)
    shoes = Category.objects.create(slug="shoes", name="Shoes")
    books = Category.objects.create(slug="books", name="Books")
    boot = Product.objects.create(
        sku="B1", name="Boot", description="Warm.", price=Decimal("59.00"), category=shoes
    )
    boot.image.save("boot.png", ContentFile(b"png"), save=True)
    Product.objects.create(sku="K1", name="Novel", price=Decimal("12.50"), category=books)
    return boot


def test_items_are_read_through_the_mapping(products):
    catalog = get_catalog()
    item = catalog.get("B1")
    assert item == CatalogItem(
        key="B1",
        title="Boot",
        category="shoes",
        description="Warm.",
        price=59.0,
        image_url=products.image.url,
        url="/product/B1/",
    )
    assert item.image_url.startswith("/media/products/boot")
    assert catalog.get("nope") is None
    assert [i.key for i in catalog.items(keys=["K1"])] == ["K1"]
    assert sorted(i.key for i in catalog.items()) == ["B1", "K1"]


def live_products():
    return Product.objects.filter(price__gt=20)


def test_a_queryset_callable_limits_the_catalog(products, settings):
    catalog_settings = {**settings.AIGC["CATALOG"], "QUERYSET": "tests.test_catalog.live_products"}
    with override_settings(AIGC={**settings.AIGC, "CATALOG": catalog_settings}):
        assert [i.key for i in get_catalog().items()] == ["B1"]


def test_no_catalog_is_none(settings):
    with override_settings(AIGC={"CATALOG": None}):
        assert get_catalog() is None


def test_a_bad_mapping_raises_naming_the_field(settings):
    bad = {
        "MODEL": "shopapp.Product",
        "FIELDS": {"key": "sku", "title": "titel", "category": "category"},
    }
    with override_settings(AIGC={**settings.AIGC, "CATALOG": bad}):
        with pytest.raises(ImproperlyConfigured, match=r"FIELDS\.title"):
            get_catalog()


def test_keys_the_key_field_cannot_hold_name_no_product(products):
    from tests import settings as test_settings

    config = test_settings.AIGC["CATALOG"]
    with override_settings(
        AIGC={
            **test_settings.AIGC,
            "CATALOG": {**config, "FIELDS": {**config["FIELDS"], "key": "id"}},
        }
    ):
        catalog = get_catalog()
        keys = [i.key for i in catalog.items([str(products.pk), "not-a-number", None])]
        assert keys == [str(products.pk)]
        assert catalog.get("sku-like-text") is None
        assert catalog.get(str(products.pk)).title == "Boot"
