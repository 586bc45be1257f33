"""Create the storefront's slots: the placements generated content fills."""

from __future__ import annotations

from django.core.management.base import BaseCommand

from aigc_django.models import Slot

SLOTS = [
    {
        "key": "home-hero",
        "name": "Home page hero",
        "kind": Slot.Kind.BANNER,
        "sizes": [[1200, 628], [728, 90], [300, 250]],
        "copy_fields": {"headline": 48, "body": 120, "cta": 20},
        "brief": "Welcome back: the things you like, freshly picked",
        "variants_per_segment": 2,
        "link": "/",
    },
    {
        "key": "category-strip",
        "name": "Category page strip",
        "kind": Slot.Kind.BANNER,
        "sizes": [[1920, 600], [750, 1000]],
        "copy_fields": {"headline": 40, "cta": 18},
        "brief": "Highlights of the season",
        "variants_per_segment": 2,
        "link": "/search/",
    },
    {
        "key": "cart-nudge",
        "name": "Cart page message",
        "kind": Slot.Kind.COPY,
        "copy_fields": {"headline": 60, "body": 140},
        "brief": "Remind shoppers what goes well with their cart",
        "variants_per_segment": 2,
        "link": "/cart/",
    },
]


class Command(BaseCommand):
    help = "Create (or update) the example storefront's slots."

    def handle(self, *args, **options) -> None:
        for spec in SLOTS:
            values = {k: v for k, v in spec.items() if k != "key"}
            slot, created = Slot.objects.update_or_create(key=spec["key"], defaults=values)
            self.stdout.write(f"{'Created' if created else 'Updated'} slot {slot.key}")
