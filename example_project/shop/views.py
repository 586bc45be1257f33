"""The storefront's pages. Each one tells aigc_django what the visitor did with ``track()``."""

import secrets

from django.conf import settings
from django.contrib import messages
from django.db.models import Q, QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from aigc_django import track
from aigc_django.models import GenerationJob, Segment, Slot, Variant
from aigc_django.profiles.lookup import segment_key_for
from shop.cart import Cart
from shop.models import Category, Product

# Longer queries are cut before they are stored (events keep small properties).
MAX_QUERY_LENGTH = 100


def _products() -> QuerySet[Product]:
    return Product.objects.select_related("category")


def _back(request: HttpRequest, fallback: str) -> HttpResponse:
    """Redirect to the form's ``next`` field when it points at this site, else to fallback."""
    target = request.POST.get("next", "")
    if url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return redirect(target)
    return redirect(fallback)


@require_GET
def home(request: HttpRequest) -> HttpResponse:
    track(request, "page_view", properties={"page": "home"})
    categories = Category.objects.all()
    featured = [
        product
        for category in categories
        if (product := _products().filter(category=category).first()) is not None
    ]
    return render(request, "shop/home.html", {"categories": categories, "featured": featured})


@require_GET
def category(request: HttpRequest, slug: str) -> HttpResponse:
    category = get_object_or_404(Category, slug=slug)
    track(request, "category_view", category=category.slug)
    products = _products().filter(category=category)
    return render(request, "shop/category.html", {"category": category, "products": products})


@require_GET
def product(request: HttpRequest, sku: str) -> HttpResponse:
    product = get_object_or_404(_products(), sku=sku)
    track(request, "product_view", item=product)
    related = _products().filter(category=product.category).exclude(pk=product.pk)[:4]
    return render(request, "shop/product.html", {"product": product, "related": related})


@require_GET
def search(request: HttpRequest) -> HttpResponse:
    query = request.GET.get("q", "").strip()[:MAX_QUERY_LENGTH]
    results = Product.objects.none()
    if query:
        results = _products().filter(
            Q(name__icontains=query)
            | Q(description__icontains=query)
            | Q(category__name__icontains=query)
        )
        track(request, "search", properties={"query": query, "results": results.count()})
    return render(request, "shop/search.html", {"query": query, "results": results})


@require_GET
def cart(request: HttpRequest) -> HttpResponse:
    track(request, "page_view", properties={"page": "cart"})
    lines = Cart(request.session).lines()
    return render(request, "shop/cart.html", {"lines": lines, "total": Cart.total(lines)})


@require_POST
def cart_add(request: HttpRequest, sku: str) -> HttpResponse:
    product = get_object_or_404(_products(), sku=sku)
    Cart(request.session).add(product)
    track(request, "add_to_cart", item=product, value=product.price, properties={"quantity": 1})
    messages.success(request, f"Added {product.name} to your cart.")
    return _back(request, "shop:cart")


@require_POST
def cart_remove(request: HttpRequest, sku: str) -> HttpResponse:
    product = get_object_or_404(_products(), sku=sku)
    removed = Cart(request.session).remove(product)
    if removed:
        track(
            request,
            "remove_from_cart",
            item=product,
            value=product.price * removed,
            properties={"quantity": removed},
        )
        messages.info(request, f"Removed {product.name} from your cart.")
    return _back(request, "shop:cart")


@require_http_methods(["GET", "POST"])
def checkout(request: HttpRequest) -> HttpResponse:
    basket = Cart(request.session)
    lines = basket.lines()
    total = Cart.total(lines)
    if not lines:
        return redirect("shop:cart")
    if request.method == "POST":
        # A demo shop: placing the order takes no payment and stores no order row.
        order = secrets.token_hex(4).upper()
        track(
            request,
            "purchase",
            value=total,
            properties={
                "order": order,
                "items": {line.product.sku: line.quantity for line in lines},
            },
        )
        basket.clear()
        request.session["last_order"] = {"order": order, "total": str(total)}
        return redirect("shop:checkout-done")
    return render(request, "shop/checkout.html", {"lines": lines, "total": total})


@require_GET
def checkout_done(request: HttpRequest) -> HttpResponse:
    last_order = request.session.get("last_order")
    if last_order is None:
        return redirect("shop:home")
    return render(request, "shop/checkout_done.html", {"last_order": last_order})


@require_GET
def segments(request: HttpRequest) -> HttpResponse:
    """The segments the app learned, what they like, and which one this visitor is in."""
    order = {"rule": 0, "learned": 1, "everyone": 2}
    found = sorted(Segment.objects.filter(active=True), key=lambda s: (order[s.kind], -s.size))
    products = {
        p.sku: p for p in _products().filter(sku__in={k for s in found for k in s.top_items})
    }
    rows = [
        {
            "segment": s,
            "top_categories": [(c, round(share * 100)) for c, share in s.top_categories or []],
            "top_products": [products[k] for k in s.top_items[:4] if k in products],
        }
        for s in found
    ]
    return render(
        request,
        "shop/segments.html",
        {
            "rows": rows,
            "mine": segment_key_for(request.aigc_visitor_id),
            "debug_personas": settings.DEBUG,
        },
    )


@require_GET
def generated(request: HttpRequest) -> HttpResponse:
    """What generation made, per slot and segment, whatever its review status.

    The storefront's own pages show only approved variants, through the template tags; this
    page shows the generation stage behind them: every variant with its banners, copy,
    safety flags and the model that made it. Nothing is tracked here.
    """
    from django.core.files.storage import default_storage

    variants = Variant.objects.select_related("slot", "segment").order_by(
        "slot__key", "segment__key", "job_id", "position"
    )
    cells: dict[tuple[str, str], dict] = {}
    for variant in variants[:300]:
        cell = cells.setdefault(
            (variant.slot.key, variant.segment.key),
            {"slot": variant.slot, "segment": variant.segment, "variants": []},
        )
        banners = []
        for size, entry in variant.renditions_in_order():
            files = entry.get("files", [])
            master = next((f for f in files if f["width"] == entry["width"]), None)
            if master:
                banners.append({"size": size, "url": default_storage.url(master["name"])})
        cell["variants"].append({"variant": variant, "banners": banners})
    jobs = GenerationJob.objects.select_related("slot", "segment").order_by("-created_at")[:10]
    return render(
        request,
        "shop/generated.html",
        {"cells": list(cells.values()), "jobs": jobs, "slots": Slot.objects.count()},
    )


@require_POST
def become(request: HttpRequest, key: str) -> HttpResponse:
    """The demo's persona switcher: browse as a random simulated shopper of a segment.

    The visitor cookie is switched to that shopper's visitor id (the middleware writes it),
    so every page then shows what that segment gets. A demo feature: only with DEBUG on,
    since it lets anyone take over a visitor's identity.
    """
    from django.http import Http404

    from aigc_django.models import Profile

    if not settings.DEBUG or not getattr(request, "aigc_tracking", False):
        raise Http404("The persona switcher is a demo feature (DEBUG only).")
    if key == "everyone":
        # Everyone's visitors are those with no learned or rule segment: a new visitor is one.
        import uuid

        request.aigc_visitor_id = uuid.uuid4()
        messages.success(request, "You now browse as a new visitor: everyone's banners.")
        return redirect("shop:home")
    profile = Profile.objects.filter(segment__key=key).order_by("?").first()
    if profile is None:
        messages.info(request, f"Segment {key!r} has no shoppers yet.")
        return redirect("shop:segments")
    request.aigc_visitor_id = profile.visitor_id
    messages.success(
        request,
        f"You now browse as a shopper of segment {profile.segment.name!r}: "
        "the banners and copy are theirs.",
    )
    return redirect("shop:home")


@require_GET
def your_data(request: HttpRequest) -> HttpResponse:
    # Nothing is tracked here: this page is about what is tracked.
    return render(request, "shop/your_data.html", {"tracking": request.aigc_tracking})
