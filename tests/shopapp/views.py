from django.conf import settings
from django.contrib.auth import authenticate, login, logout
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404
from django.template import Context, Template
from django.views.static import serve

from aigc_django import track
from aigc_django.models import Variant
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
    """<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>Store: {{ slot_key }}</title></head>
<body>
<h1>Store</h1>
<!-- A stand-in for the delivery template tags: approved variants for everyone. -->
<section id="slot" data-slot="{{ slot_key }}">
{% for variant in variants %}
  <figure class="variant" data-variant="{{ variant.pk }}">
    {% if variant.image %}
      <img class="banner" src="{{ variant.image.url }}" alt="{{ variant.alt_text }}">
    {% endif %}
    <figcaption class="headline">{{ variant.copy.headline }}</figcaption>
  </figure>
{% empty %}
  <p class="empty">Nothing approved for this slot yet.</p>
{% endfor %}
</section>
</body>
</html>
"""
)


def store_stand_in(request: HttpRequest) -> HttpResponse:
    """Stand-in storefront until the delivery template tags exist: every approved variant of
    the slot named by ``?slot=`` (default ``home-hero``) for the ``everyone`` segment, with
    its master banner image and headline. No selection, no tracking: the tags will replace
    this page in the tests once they land."""
    slot_key = request.GET.get("slot", "home-hero")
    variants = Variant.objects.filter(
        slot__key=slot_key, segment__key="everyone", status=Variant.Status.APPROVED
    ).order_by("pk")
    return HttpResponse(STORE_PAGE.render(Context({"slot_key": slot_key, "variants": variants})))


def media_file(request: HttpRequest, path: str) -> HttpResponse:
    """Serve MEDIA_ROOT, read per request so a test's ``settings.MEDIA_ROOT`` applies (tests
    only: django.conf.urls.static.static() serves nothing with DEBUG off)."""
    return serve(request, path, document_root=settings.MEDIA_ROOT)
