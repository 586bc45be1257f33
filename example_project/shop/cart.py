"""The cart lives in the session as {sku: quantity}."""

from dataclasses import dataclass
from decimal import Decimal

from django.contrib.sessions.backends.base import SessionBase

from shop.models import Product

SESSION_KEY = "cart"


@dataclass
class CartLine:
    product: Product
    quantity: int

    @property
    def total(self) -> Decimal:
        return self.product.price * self.quantity


class Cart:
    def __init__(self, session: SessionBase) -> None:
        self.session = session
        self.quantities: dict[str, int] = dict(session.get(SESSION_KEY, {}))

    def save(self) -> None:
        self.session[SESSION_KEY] = self.quantities

    def add(self, product: Product, quantity: int = 1) -> None:
        self.quantities[product.sku] = self.quantities.get(product.sku, 0) + quantity
        self.save()

    def remove(self, product: Product) -> int:
        """Drop the product's line; return how many were in the cart."""
        removed = self.quantities.pop(product.sku, 0)
        self.save()
        return removed

    def clear(self) -> None:
        self.quantities = {}
        self.save()

    def count(self) -> int:
        return sum(self.quantities.values())

    def lines(self) -> list[CartLine]:
        products = Product.objects.select_related("category").filter(sku__in=self.quantities)
        by_sku = {product.sku: product for product in products}
        return [
            CartLine(by_sku[sku], quantity)
            for sku, quantity in self.quantities.items()
            if sku in by_sku
        ]

    @staticmethod
    def total(lines: list[CartLine]) -> Decimal:
        return sum((line.total for line in lines), Decimal("0.00"))
