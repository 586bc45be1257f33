from __future__ import annotations

from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class AigcWagtailConfig(AppConfig):
    """The Wagtail adapter. Its label is not "wagtail": Wagtail's own core app has that one."""

    name = "aigc_django.contrib.wagtail"
    label = "aigc_wagtail"
    verbose_name = _("AI-generated content for Wagtail")
