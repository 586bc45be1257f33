"""Wagtail admin hooks: a "Content review" menu item that opens the review queue.

The review queue itself stays in the Django admin (``/admin/aigc_django/variant/``), where
the review page, bulk actions and audit trail live; the Wagtail menu links to it, shows the
number of variants waiting for review, and is shown only to users who can open it: staff
(the Django admin's own condition) with permission to view or review variants.
"""

from __future__ import annotations

from django.http import HttpRequest
from django.urls import reverse_lazy
from django.utils.translation import gettext_lazy as _
from wagtail import hooks
from wagtail.admin.menu import MenuItem
from wagtail.admin.ui.sidebar import LinkMenuItem

VIEW_PERMISSION = "aigc_django.view_variant"
REVIEW_PERMISSION = "aigc_django.review_variant"


def pending_count() -> int:
    """How many variants wait for a decision."""
    from aigc_django.models import Variant

    return Variant.objects.filter(status=Variant.Status.PENDING).count()


class ContentReviewMenuItem(MenuItem):
    """Links to the Django admin review queue, labelled with the pending count when there is
    one ("Content review (3)")."""

    def is_shown(self, request: HttpRequest) -> bool:
        # The Django admin turns away users who are not staff, so the link would only lead
        # them to a login page. Reviewers may look too (VariantAdmin.has_view_permission).
        user = request.user
        if not (user.is_active and user.is_staff):
            return False
        return user.has_perm(VIEW_PERMISSION) or user.has_perm(REVIEW_PERMISSION)

    def render_component(self, request: HttpRequest) -> LinkMenuItem:
        # Menu item instances are built once and shared; the count is per request.
        count = pending_count()
        label = f"{self.label} ({count})" if count else str(self.label)
        return LinkMenuItem(
            self.name,
            label,
            str(self.url),
            icon_name=self.icon_name,
            classname=self.classname,
            attrs=self.attrs,
        )


@hooks.register("register_admin_menu_item")
def register_content_review_menu_item() -> ContentReviewMenuItem:
    return ContentReviewMenuItem(
        _("Content review"),
        reverse_lazy("admin:aigc_django_variant_changelist"),
        name="aigc-content-review",
        icon_name="tasks",
        order=850,
    )
