from django.contrib.auth import authenticate, login, logout
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404

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
