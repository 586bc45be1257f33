from typing import Any

from django.http import HttpRequest

from shop.cart import Cart
from shop.models import Category


def shop(request: HttpRequest) -> dict[str, Any]:
    """The navigation's categories and the cart count, on every page."""
    return {
        "nav_categories": Category.objects.all(),
        "cart_count": Cart(request.session).count() if hasattr(request, "session") else 0,
    }
