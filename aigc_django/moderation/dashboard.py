"""The content dashboard in the admin: coverage, click-through, segment sizes, the queue.

Mounted by ``SlotAdmin.get_urls()`` (see ``slot_admin.py``), so it lives inside the admin
site, behind its login, at ``/admin/aigc_django/slot/dashboard/`` (URL name
``admin:aigc_django_dashboard``). It needs the ``aigc_django.view_variant`` permission;
queueing generation for a gap needs ``aigc_django.add_generationjob`` or
``aigc_django.review_variant``. Every panel runs a fixed number of queries (see ``stats``).
"""

from __future__ import annotations

from itertools import groupby

from django.apps import apps
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import NoReverseMatch, reverse
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from aigc_django.generation import service
from aigc_django.models import Segment, Slot
from aigc_django.moderation import charts, stats

VIEW_PERMISSION = "aigc_django.view_variant"
GENERATE_PERMISSIONS = ("aigc_django.add_generationjob", "aigc_django.review_variant")
VARIANT_LIMIT = 100
QUEUE_LIMIT = 50


def can_view(user) -> bool:
    """Whether ``user`` may open the dashboard."""
    return user.is_active and user.is_staff and user.has_perm(VIEW_PERMISSION)


def can_generate(user) -> bool:
    """Whether ``user`` may queue generation jobs from the dashboard."""
    return user.is_active and user.is_staff and any(user.has_perm(p) for p in GENERATE_PERMISSIONS)


def _admin_url(name: str, *args: object) -> str | None:
    """The URL of an admin page, or None when that model has no admin (yet)."""
    try:
        return reverse(f"admin:{name}", args=args)
    except NoReverseMatch:
        return None


def dashboard_view(request: HttpRequest, site: admin.AdminSite) -> HttpResponse:
    """The dashboard page (GET only; the Generate buttons post to ``generate_view``)."""
    if not can_view(request.user):
        raise PermissionDenied
    matrix = stats.coverage_matrix()
    click_rows, approved_total = stats.click_through(VARIANT_LIMIT)
    jobs, job_totals = stats.generation_queue(QUEUE_LIMIT)

    variant_change = _admin_url("aigc_django_variant_changelist")
    by_slot = []
    for slot_key, group in groupby(click_rows, key=lambda row: row.variant.slot.key):
        rows = list(group)
        plot = charts.interval_plot(
            [
                charts.Interval(
                    f"{row.variant.segment.key} · #{row.variant.pk}",
                    row.interval.low,
                    row.interval.mean,
                    row.interval.high,
                    f"{row.clicks}/{row.impressions}",
                )
                for row in rows
            ],
            title=_("Click-through of the approved variants of %(slot)s") % {"slot": slot_key},
        )
        table = [
            {
                "row": row,
                "headline": _headline(row.variant.copy),
                "ctr": "—" if row.rate is None else f"{row.rate:.2%}",
                "interval": f"{row.interval.low:.2%} to {row.interval.high:.2%}",
                "url": f"{variant_change}{row.variant.pk}/change/" if variant_change else None,
            }
            for row in rows
        ]
        by_slot.append({"slot": rows[0].variant.slot, "chart": plot, "rows": table})

    sizes = sorted(matrix.segments, key=lambda s: (-s.size, s.key))
    job_change = _admin_url("aigc_django_generationjob_changelist")
    context = {
        **site.each_context(request),
        "title": _("Content dashboard"),
        "app_name": apps.get_app_config("aigc_django").verbose_name,
        "matrix": matrix,
        "can_generate": can_generate(request.user),
        "generate_url": reverse("admin:aigc_django_dashboard_generate"),
        "click_through": by_slot,
        "approved_total": approved_total,
        "approved_shown": len(click_rows),
        "segment_sizes": charts.horizontal_bars(
            [(segment.name, segment.size) for segment in sizes],
            title=_("Visitors per active segment"),
        ),
        "jobs": [
            {
                "job": job,
                "progress": charts.progress_bar(job.progress),
                "url": f"{job_change}{job.pk}/change/" if job_change else None,
            }
            for job in jobs
        ],
        "job_totals": job_totals,
        "job_changelist": job_change,
        "queue_limit": QUEUE_LIMIT,
    }
    request.current_app = site.name
    return TemplateResponse(request, "admin/aigc_django/dashboard.html", context)


@require_POST
def generate_view(request: HttpRequest, site: admin.AdminSite) -> HttpResponse:
    """Queue one job for the missing variants of a (slot, segment) cell, then go back.

    Missing is counted as ``service.coverage`` counts it (approved, pending and queued
    variants), so a second click while the first job waits queues nothing.
    """
    if not can_generate(request.user):
        raise PermissionDenied
    back = HttpResponseRedirect(reverse("admin:aigc_django_dashboard"))
    slot = get_object_or_404(Slot, pk=request.POST.get("slot") or 0)
    segment = get_object_or_404(Segment, pk=request.POST.get("segment") or 0)
    names = {"slot": slot.name, "segment": segment.name}
    if not (slot.active and segment.active):
        messages.error(request, _("%(slot)s or %(segment)s is not active.") % names)
        return back
    missing = slot.variants_per_segment - service.coverage(slot, segment)
    if missing <= 0:
        messages.info(
            request,
            _("%(slot)s for %(segment)s has enough variants approved, pending or queued.") % names,
        )
        return back
    job = service.create_job(slot, segment, missing)
    if job is None:  # another editor's click took the same round a moment ago
        messages.warning(
            request, _("A job for %(slot)s and %(segment)s was queued just now.") % names
        )
        return back
    service.enqueue(job)
    messages.success(
        request,
        _("Queued job %(job)s: %(count)s variants of %(slot)s for %(segment)s.")
        % {**names, "job": job.pk, "count": missing},
    )
    return back


def _headline(copy: object) -> str:
    """The first text of a variant's copy, for a table cell."""
    if isinstance(copy, dict):
        for key in ("headline", *copy):
            value = copy.get(key)
            if isinstance(value, str) and value:
                return value
    return ""
