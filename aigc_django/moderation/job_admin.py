"""Generation job admin: what the workers are doing, what failed and why, and a retry.

Jobs are made by ``plan_generation`` and the dashboard's Generate buttons, never by hand, so
there is no add page and every field is read-only. The "Retry" action puts failed jobs, and
jobs that have waited in the queue for longer than ``STUCK_AFTER``, back on the queue; a job
is idempotent, so a retry makes only the variants it still lacks.
"""

from __future__ import annotations

from datetime import timedelta

from django.contrib import admin, messages
from django.db.models import Count, QuerySet
from django.http import HttpRequest
from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from aigc_django.generation import service
from aigc_django.models import GenerationJob
from aigc_django.moderation import charts, dashboard

STUCK_AFTER = timedelta(minutes=30)
ERROR_EXCERPT = 80
STATUS_COLORS = {
    GenerationJob.Status.QUEUED: "#6c757d",
    GenerationJob.Status.RUNNING: "#417690",
    GenerationJob.Status.SUCCEEDED: "#2e7d32",
    GenerationJob.Status.FAILED: "#ba2121",
}


def retryable(job: GenerationJob, now=None) -> bool:
    """Failed jobs, and queued jobs older than ``STUCK_AFTER`` (their message was lost)."""
    now = now or timezone.now()
    if job.status == GenerationJob.Status.FAILED:
        return True
    return job.status == GenerationJob.Status.QUEUED and job.created_at < now - STUCK_AFTER


def retry_job(job: GenerationJob) -> bool:
    """Reset a retryable job to queued and send it again; False when it was not retryable
    or changed status meanwhile."""
    if not retryable(job):
        return False
    reset = GenerationJob.objects.filter(pk=job.pk, status=job.status).update(
        status=GenerationJob.Status.QUEUED, error="", finished_at=None, celery_task_id=""
    )
    if not reset:
        return False
    service.enqueue(job)
    return True


@admin.register(GenerationJob)
class GenerationJobAdmin(admin.ModelAdmin):
    """Jobs with a status badge, a progress bar and the number of variants made."""

    list_display = (
        "id",
        "slot",
        "segment",
        "count",
        "status_badge",
        "progress_bar",
        "attempts",
        "error_excerpt",
        "created_at",
        "finished_at",
        "variants_made",
    )
    list_filter = ("status", "slot", "segment")
    list_select_related = ("slot", "segment")
    search_fields = ("idempotency_key", "celery_task_id", "error")
    ordering = ("-created_at", "-id")
    actions = ("retry_jobs",)
    fields = (
        "slot",
        "segment",
        "count",
        "status_badge",
        "progress_bar",
        "variants_made",
        "attempts",
        "error",
        "timings",
        "spec",
        "idempotency_key",
        "celery_task_id",
        "created_at",
        "finished_at",
    )
    readonly_fields = fields

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).annotate(made=Count("variants"))

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def changelist_view(self, request: HttpRequest, extra_context: dict | None = None):
        extra = {"dashboard_allowed": dashboard.can_view(request.user), **(extra_context or {})}
        return super().changelist_view(request, extra)

    def change_view(self, request, object_id, form_url="", extra_context=None):
        # Nothing on the page is editable: no save buttons.
        extra = {
            "show_save": False,
            "show_save_and_continue": False,
            "show_save_and_add_another": False,
            **(extra_context or {}),
        }
        return super().change_view(request, object_id, form_url, extra)

    @admin.display(description=_("status"), ordering="status")
    def status_badge(self, obj: GenerationJob) -> SafeString:
        return format_html(
            '<span style="display:inline-block;padding:1px 8px;border-radius:8px;'
            'background:{};color:#fff;font-size:11px">{}</span>',
            STATUS_COLORS.get(obj.status, "#6c757d"),
            obj.get_status_display(),
        )

    @admin.display(description=_("progress"), ordering="progress")
    def progress_bar(self, obj: GenerationJob) -> SafeString:
        return format_html(
            '{} <span class="help">{}%</span>',
            charts.progress_bar(obj.progress),
            round((obj.progress or 0) * 100),
        )

    @admin.display(description=_("error"))
    def error_excerpt(self, obj: GenerationJob) -> str:
        """The error's first line, cut to ``ERROR_EXCERPT`` characters; the whole line is
        the tooltip (a model directory's path can push the reason past the cut)."""
        error = (obj.error or "").strip().splitlines()
        first = error[0] if error else ""
        if len(first) <= ERROR_EXCERPT:
            return first
        return format_html('<span title="{}">{}</span>', first, first[: ERROR_EXCERPT - 1] + "…")

    @admin.display(description=_("variants made"), ordering="made")
    def variants_made(self, obj: GenerationJob) -> int:
        made = getattr(obj, "made", None)
        return made if made is not None else obj.variants.count()

    @admin.action(description=_("Retry failed and stuck jobs"), permissions=["change"])
    def retry_jobs(self, request: HttpRequest, queryset: QuerySet) -> None:
        """Queue failed jobs and long-queued jobs again; tell the editor what was skipped."""
        queued = skipped = unsent = 0
        for job in queryset.select_related("slot", "segment"):
            if not retry_job(job):
                skipped += 1
            elif GenerationJob.objects.filter(
                pk=job.pk, status=GenerationJob.Status.FAILED, error__startswith=service.UNSENT
            ).exists():
                unsent += 1  # sent at once (no transaction) and the broker refused it
            else:
                queued += 1
        if unsent:
            self.message_user(
                request,
                ngettext(
                    "Could not send %(count)s job to the queue: is the Celery broker down? "
                    "It stays failed; retry it once the broker is back.",
                    "Could not send %(count)s jobs to the queue: is the Celery broker down? "
                    "They stay failed; retry them once the broker is back.",
                    unsent,
                )
                % {"count": unsent},
                messages.ERROR,
            )
        if queued:
            self.message_user(
                request,
                ngettext("Queued %(count)s job again.", "Queued %(count)s jobs again.", queued)
                % {"count": queued},
                messages.SUCCESS,
            )
        if skipped:
            self.message_user(
                request,
                ngettext(
                    "Skipped %(count)s job: only failed jobs and jobs queued for more than "
                    "%(minutes)s minutes can be retried.",
                    "Skipped %(count)s jobs: only failed jobs and jobs queued for more than "
                    "%(minutes)s minutes can be retried.",
                    skipped,
                )
                % {"count": skipped, "minutes": int(STUCK_AFTER.total_seconds() // 60)},
                messages.WARNING,
            )
