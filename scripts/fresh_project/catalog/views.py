from django.http import JsonResponse
from django.middleware.csrf import get_token

from aigc_django import track
from catalog.models import Product


def product(request, sku):
    item, _ = Product.objects.get_or_create(
        sku=sku, defaults={"name": f"Product {sku}", "category": "shoes", "price": "9.99"}
    )
    get_token(request)  # the page a real shop renders carries a CSRF token
    return JsonResponse({"tracked": track(request, "product_view", item=item)})
