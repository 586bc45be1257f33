from __future__ import annotations

from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class AigcOscarConfig(AppConfig):
    """Connects aigc-django to a django-oscar shop."""

    name = "aigc_django.contrib.oscar"
    # The default label, "oscar", is taken by Oscar's own app.
    label = "aigc_oscar"
    verbose_name = _("AI-generated content for Oscar")

    def ready(self) -> None:
        from aigc_django.contrib.oscar.catalog import add_product_methods
        from aigc_django.contrib.oscar.receivers import connect_receivers

        add_product_methods()
        connect_receivers()
