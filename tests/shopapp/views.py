from django.conf import settings
from django.contrib.auth import authenticate, login, logout
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404
from django.template import RequestContext, Template
from django.views.static import serve

from aigc_django import track
from tests.shopapp.models import Product


def product(request: HttpRequest, sku: str) -> HttpResponse:
    item = get_object_or_404(Product, sku=sku)
    tracked = track(request, "product_view", item=item)
    return JsonResponse({"product": item.name, "tracked": tracked})


def plain(request: HttpRequest) -> HttpResponse:
    """A page that never touches the visitor."""
    return HttpResponse("plain")


def visitor(request: HttpRequest) -> HttpResponse:
    found = request.aigc_visitor
    return JsonResponse({"visitor": str(found.pk) if found else None})


def logout_view(request: HttpRequest) -> HttpResponse:
    logout(request)
    return HttpResponse("bye")


def login_view(request: HttpRequest) -> HttpResponse:
    user = authenticate(
        request, username=request.POST["username"], password=request.POST["password"]
    )
    if user is None:
        return HttpResponse(status=403)
    login(request, user)
    return HttpResponse("ok")


STORE_PAGE = Template(
    """{% load aigc %}<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>Store: {{ slot_key }}</title></head>
<body>
<h1>Store</h1>
<section id="slot" data-slot="{{ slot_key }}">
{% aigc_slot slot_key as shown %}
{% if shown and not shown.is_fallback %}
  <figure class="variant" data-variant="{{ shown.id }}">
    {% aigc_banner slot_key img_class="banner" loading="eager" %}
    <figcaption class="headline">{% aigc_copy slot_key "headline" %}</figcaption>
  </figure>
{% else %}
  <p class="empty">Nothing approved for this slot yet.</p>
{% endif %}
</section>
{% aigc_tracking_script %}
</body>
</html>
"""
)


def store(request: HttpRequest) -> HttpResponse:
    """A storefront page for the browser tests: the slot named by ``?slot=`` (default
    ``home-hero``) through the delivery tags, as a visitor sees it (selection, stickiness,
    impressions), with the variant's id on a ``figure.variant`` for the tests to find."""
    slot_key = request.GET.get("slot", "home-hero")
    context = RequestContext(request, {"slot_key": slot_key})
    return HttpResponse(STORE_PAGE.render(context))


def media_file(request: HttpRequest, path: str) -> HttpResponse:
    """Serve MEDIA_ROOT, read per request so a test's ``settings.MEDIA_ROOT`` applies (tests
    only: django.conf.urls.static.static() serves nothing with DEBUG off)."""
    return serve(request, path, document_root=settings.MEDIA_ROOT)


CLIENT_PAGE = Template(
    """{% load aigc %}<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>Client mode: {{ slot_key }}</title></head>
<body>
<h1>Cached page</h1>
<div id="banner">{% aigc_banner slot_key img_class="banner" loading="eager" %}</div>
<p id="headline">{% aigc_copy slot_key "headline" %}</p>
{% aigc_tracking_script %}
</body>
</html>
"""
)


def store_client(request: HttpRequest) -> HttpResponse:
    """The storefront page of a site behind a CDN: with ``DELIVERY["CLIENT_MODE"]`` the tags
    render placeholders and the tracking script fills them from the slots API."""
    slot_key = request.GET.get("slot", "home-hero")
    return HttpResponse(CLIENT_PAGE.render(RequestContext(request, {"slot_key": slot_key})))


def landing(request: HttpRequest) -> HttpResponse:
    """Where the test slot's banner links to."""
    return HttpResponse("<!doctype html><title>Landing</title><h1>Landing</h1>")
