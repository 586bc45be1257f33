"""Generation stage: jobs on Celery workers and the models the app trains."""

from __future__ import annotations

from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _


class GenerationJob(models.Model):
    """A request to generate ``count`` variants for one (slot, segment) pair."""

    class Status(models.TextChoices):
        QUEUED = "queued", _("queued")
        RUNNING = "running", _("running")
        SUCCEEDED = "succeeded", _("succeeded")
        FAILED = "failed", _("failed")

    slot = models.ForeignKey(
        "aigc_django.Slot", on_delete=models.CASCADE, related_name="jobs", verbose_name=_("slot")
    )
    segment = models.ForeignKey(
        "aigc_django.Segment",
        on_delete=models.CASCADE,
        related_name="jobs",
        verbose_name=_("segment"),
    )
    count = models.PositiveSmallIntegerField(_("variants wanted"), default=1)
    spec = models.JSONField(_("spec"), default=dict, blank=True)
    idempotency_key = models.CharField(_("idempotency key"), max_length=64, unique=True)
    status = models.CharField(
        _("status"), max_length=16, choices=Status.choices, default=Status.QUEUED, db_index=True
    )
    progress = models.FloatField(_("progress"), default=0.0)
    attempts = models.PositiveSmallIntegerField(_("attempts"), default=0)
    error = models.TextField(_("error"), blank=True, default="")
    timings = models.JSONField(_("timings"), default=dict, blank=True)
    celery_task_id = models.CharField(_("Celery task id"), max_length=64, blank=True, default="")
    created_at = models.DateTimeField(_("created at"), default=timezone.now)
    finished_at = models.DateTimeField(_("finished at"), null=True, blank=True)

    class Meta:
        verbose_name = _("generation job")
        verbose_name_plural = _("generation jobs")

    def __str__(self) -> str:
        return f"job {self.pk} ({self.status})"


class ModelArtifact(models.Model):
    """A model the app trained itself, so every variant can name the model that made it."""

    kind = models.CharField(
        _("kind"), max_length=32, help_text=_("copy, factorization, kmeans, layout, gan")
    )
    version = models.PositiveIntegerField(_("version"))
    metrics = models.JSONField(_("metrics"), default=dict, blank=True)
    path = models.CharField(_("path"), max_length=500, help_text=_("Directory of the weights."))
    active = models.BooleanField(_("active"), default=True)
    created_at = models.DateTimeField(_("created at"), default=timezone.now)

    class Meta:
        verbose_name = _("model artifact")
        verbose_name_plural = _("model artifacts")
        constraints = [
            models.UniqueConstraint(fields=["kind", "version"], name="aigc_artifact_version"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} v{self.version}"
