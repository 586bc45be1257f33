from __future__ import annotations

from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class AigcDjangoConfig(AppConfig):
    name = "aigc_django"
    verbose_name = _("AI-generated content")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.contrib.auth.signals import user_logged_in, user_logged_out

        from aigc_django import checks  # noqa: F401  (registers the system checks)
        from aigc_django.delivery import (
            cache,  # noqa: F401  (bumps cached slots on reviews)
            selection,  # noqa: F401  (drops stale sticky entries)
        )
        from aigc_django.moderation import signals  # noqa: F401  (connects auto-approval)
        from aigc_django.tracking.signals import merge_visitor_on_login, new_visitor_on_logout

        user_logged_in.connect(merge_visitor_on_login, dispatch_uid="aigc_merge_visitor")
        user_logged_out.connect(new_visitor_on_logout, dispatch_uid="aigc_new_visitor")
