"""Receivers for Oscar's signals: what a visitor does in an Oscar shop becomes events.

| Oscar signal | event |
|---|---|
| ``catalogue.signals.product_viewed`` | ``product_view`` of the product |
| ``basket.signals.basket_addition`` | ``add_to_cart`` of the product, valued at its price |
| ``search.signals.user_search`` | ``search`` with ``properties["query"]`` |
| ``checkout.signals.post_checkout`` | one ``purchase`` per order line, valued at the line |

Each receiver logs and swallows its own errors: tracking never breaks one of Oscar's views.
"""

from __future__ import annotations

import functools
import logging
import uuid
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from django.http import HttpRequest

from aigc_django.contrib.oscar.catalog import catalog_product, category_key
from aigc_django.models.tracking import Visitor
from aigc_django.tracking.track import track

logger = logging.getLogger("aigc_django.contrib.oscar")

# Long enough for any real query; keeps an event far below API["MAX_PROPERTIES_BYTES"].
MAX_QUERY_LENGTH = 200


def never_raises(receiver: Callable[..., Any]) -> Callable[..., None]:
    """Run ``receiver``, logging any exception instead of raising it into Oscar's view."""

    @functools.wraps(receiver)
    def safe_receiver(*args: Any, **kwargs: Any) -> None:
        try:
            receiver(*args, **kwargs)
        except Exception:
            logger.exception("Tracking failed in %s; the page is served anyway.", receiver.__name__)

    return safe_receiver


def visitor_of_user(user: Any) -> uuid.UUID | None:
    """The visitor a logged-in user's browsers record to (the oldest that is not merged,
    as on login), or None for an anonymous user or one never tracked."""
    if user is None or not getattr(user, "is_authenticated", False):
        return None
    return (
        Visitor.objects.filter(user=user, merged_into__isnull=True)
        .order_by("first_seen")
        .values_list("id", flat=True)
        .first()
    )


def _money(price: Any) -> Decimal | None:
    """The amount of an Oscar price: with tax when the tax is known, else without; None
    for Oscar's ``Unavailable`` price."""
    if price is None or not price.exists:
        return None
    return price.incl_tax if price.is_tax_known else price.excl_tax


def unit_price(request: HttpRequest, product: Any) -> Decimal | None:
    """What the shop charges ``request``'s customer for one ``product``, through Oscar's
    pricing strategy (the one BasketMiddleware put on the request)."""
    strategy = getattr(request, "strategy", None)
    if strategy is None:
        from oscar.core.loading import get_class

        strategy = get_class("partner.strategy", "Selector")().strategy(
            request=request, user=getattr(request, "user", None)
        )
    return _money(strategy.fetch_for_product(product).price)


def _quantity(request: HttpRequest) -> int:
    try:
        quantity = int(request.POST.get("quantity", 1))
    except (TypeError, ValueError):
        return 1
    return max(quantity, 1)


@never_raises
def track_product_view(sender: Any, product: Any, request: HttpRequest, **kwargs: Any) -> None:
    """``product_viewed``: a product page was shown."""
    track(request, "product_view", item=catalog_product(product))


@never_raises
def track_basket_addition(sender: Any, product: Any, request: HttpRequest, **kwargs: Any) -> None:
    """``basket_addition``: the value is the price of the quantity added."""
    quantity = _quantity(request)
    price = unit_price(request, product)
    track(
        request,
        "add_to_cart",
        item=catalog_product(product),
        value=price * quantity if price is not None else None,
        properties={"quantity": quantity},
    )


@never_raises
def track_search(sender: Any, query: str, **kwargs: Any) -> None:
    """``user_search``: Oscar sends it without the request, but from the search view, whose
    ``request`` attribute is the request. Empty queries and further result pages are left out.
    """
    request = getattr(sender, "request", None)
    query = (query or "").strip()
    if request is None or not query or request.GET.get("page", "1") != "1":
        return
    track(request, "search", properties={"query": query[:MAX_QUERY_LENGTH]})


def track_order(order: Any, request: HttpRequest | None = None) -> int:
    """Record one ``purchase`` event per line of an Oscar order; return how many were recorded.

    With ``request``, the events belong to its visitor (and its consent and privacy checks
    apply). Without one (an order placed by a payment callback or a script), they belong to
    the visitor of the order's user, and nothing is recorded for a guest order. Each event
    names the line's product (a child product counts as its parent), is valued at the line's
    price after discounts, with tax, and carries ``properties`` ``{"order": number,
    "quantity": n}``. A line whose product was deleted is recorded without an item.
    """
    visitor = None
    if request is None:
        visitor = visitor_of_user(order.user)
        if visitor is None:
            return 0
    recorded = 0
    for line in order.lines.select_related("product__parent").order_by("pk"):
        recorded += int(
            track(
                request,
                "purchase",
                item=catalog_product(line.product),
                value=line.line_price_incl_tax,
                properties={"order": str(order.number), "quantity": line.quantity},
                visitor=visitor,
            )
        )
    return recorded


@never_raises
def track_checkout(sender: Any, order: Any, request: HttpRequest, **kwargs: Any) -> None:
    """``post_checkout``: the order placed by Oscar's checkout views."""
    track_order(order, request=request)


@never_raises
def track_category_view(request: HttpRequest, category: Any) -> None:
    """Record a ``category_view`` of an Oscar category (Oscar has no signal for it)."""
    track(request, "category_view", category=category_key(category))


def connect_receivers() -> None:
    """Connect the receivers to Oscar's signals (from the app's ``ready()``)."""
    from oscar.apps.basket.signals import basket_addition
    from oscar.apps.catalogue.signals import product_viewed
    from oscar.apps.checkout.signals import post_checkout
    from oscar.apps.search.signals import user_search

    product_viewed.connect(track_product_view, dispatch_uid="aigc_oscar_product_view")
    basket_addition.connect(track_basket_addition, dispatch_uid="aigc_oscar_add_to_cart")
    user_search.connect(track_search, dispatch_uid="aigc_oscar_search")
    post_checkout.connect(track_checkout, dispatch_uid="aigc_oscar_purchase")
