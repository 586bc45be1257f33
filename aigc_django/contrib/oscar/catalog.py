"""Oscar's products as the aigc-django catalog.

Use the ready-made mapping in settings::

    from aigc_django.contrib.oscar.catalog import OSCAR_CATALOG

    AIGC = {"CATALOG": OSCAR_CATALOG}

The rules (docs/oscar.md says why):

- **key**: the product's primary key, as a string.
- **products**: only browsable ones: public, and standalone or parent (Oscar's
  ``Product.objects.browsable()``). Child products (variants) count as their parent.
- **price**: the lowest ``price`` of the product's stock records, or, for a parent product,
  of its public children's stock records; records without a price are skipped. It is the
  partner's base price: Oscar's pricing strategy (tax, per-customer prices) is not applied,
  because the catalog is read outside any request.
- **category**: the deepest of the product's public categories (ties go to the one first
  in tree order), as its full slug (``"books/fiction"``), cut to 128 characters.
- **image**: the original file of the product's primary image.

The catalog adapter reads fields as attribute paths, and Oscar keeps none of the price,
category and image rules above on its ``Product``: :func:`add_product_methods` (run when
the app starts) adds them as the methods ``aigc_price``, ``aigc_category`` and
``aigc_image``.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.apps import apps
from django.db import models
from django.db.models import OuterRef, Q, Subquery

# Set on products by browsable_products(), read by lowest_price().
PRICE_ANNOTATION = "aigc_lowest_price"
MAX_CATEGORY_KEY_LENGTH = 128

OSCAR_CATALOG: dict[str, Any] = {
    "MODEL": "catalogue.Product",
    "FIELDS": {
        "key": "id",
        "title": "get_title",
        "description": "description",
        "price": "aigc_price",
        "category": "aigc_category",
        "image": "aigc_image",
        "url": "get_absolute_url",
    },
    "QUERYSET": "aigc_django.contrib.oscar.catalog.browsable_products",
}


def _stock_records_of(product: Any) -> Q:
    """Stock records that price ``product`` (a model instance or an ``OuterRef``)."""
    return Q(product=product) | Q(product__parent=product, product__is_public=True)


def browsable_products() -> models.QuerySet:
    """Public standalone and parent products, with what the catalog reads fetched in bulk."""
    product_model = apps.get_model("catalogue", "Product")
    stock_record_model = apps.get_model("partner", "StockRecord")
    lowest = (
        stock_record_model.objects.filter(_stock_records_of(OuterRef("pk")), price__isnull=False)
        .order_by("price")
        .values("price")[:1]
    )
    return (
        product_model.objects.browsable()
        .annotate(**{PRICE_ANNOTATION: Subquery(lowest)})
        .prefetch_browsable_categories()
        .prefetch_related("images")
        .order_by("pk")
    )


def lowest_price(product: Any) -> Decimal | None:
    """The lowest stock record price of a product (or of its children, for a parent)."""
    if PRICE_ANNOTATION in product.__dict__:
        return product.__dict__[PRICE_ANNOTATION]
    if product.pk is None:
        return None
    stock_record_model = apps.get_model("partner", "StockRecord")
    record = (
        stock_record_model.objects.filter(_stock_records_of(product), price__isnull=False)
        .order_by("price")
        .first()
    )
    return record.price if record is not None else None


def deepest_category(product: Any) -> Any:
    """The deepest public category of a product (its parent's for a child), ties going to
    the first in tree order; None when it has none."""
    categories = list(product.get_categories()) if product.pk is not None else []
    if not categories:
        return None
    return min(categories, key=lambda category: (-category.depth, category.path))


def category_key(category: Any) -> str:
    """The catalog's key for an Oscar category: its full slug, at most 128 characters."""
    return category.full_slug[:MAX_CATEGORY_KEY_LENGTH]


def product_category_key(product: Any) -> str:
    """The key of :func:`deepest_category`, or "" when the product has no category."""
    category = deepest_category(product)
    return category_key(category) if category is not None else ""


def primary_image_file(product: Any) -> Any:
    """The original file of the product's primary image, or None when it has no image.

    Oscar's ``primary_image()`` returns a dict standing in for a missing image.
    """
    image = product.primary_image() if product.pk is not None else None
    return getattr(image, "original", None)


PRODUCT_METHODS = {
    "aigc_price": lowest_price,
    "aigc_category": product_category_key,
    "aigc_image": primary_image_file,
}


def add_product_methods() -> None:
    """Give Oscar's ``Product`` model (or the shop's fork of it) the methods that
    :data:`OSCAR_CATALOG` reads. A method the model already has is left alone, so a fork
    can define its own rule under the same name."""
    product_model = apps.get_model("catalogue", "Product")
    for name, function in PRODUCT_METHODS.items():
        if not hasattr(product_model, name):
            setattr(product_model, name, function)


def catalog_product(product: Any) -> Any:
    """The product the catalog lists for ``product``: the parent of a child product."""
    if product is not None and product.is_child and product.parent_id is not None:
        return product.parent
    return product
