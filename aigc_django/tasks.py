"""Celery tasks: thin wrappers that call services.

A reusable app never creates a Celery app; the project's app picks these up through
``app.autodiscover_tasks()``. Route them to the ``AIGC["CELERY_QUEUE"]`` queue ("aigc").
"""

from __future__ import annotations

from celery import shared_task


@shared_task(name="aigc_django.flush_events", acks_late=True, ignore_result=True)
def flush_events() -> int:
    """Write buffered events in bulk (and batches a dead flusher left behind)."""
    from aigc_django.tracking.ingest import flush_buffer

    return flush_buffer()


@shared_task(name="aigc_django.purge_events", acks_late=True, ignore_result=True)
def purge_events() -> dict:
    """Delete events older than ``AIGC["RETENTION_DAYS"]`` and visitors left with none."""
    from aigc_django.tracking.privacy import purge

    return purge()


@shared_task(name="aigc_django.build_profiles", acks_late=True, ignore_result=True)
def build_profiles() -> dict:
    """Rebuild every profile and the learned segments (nightly)."""
    from dataclasses import asdict

    from aigc_django.profiles.build import build_profiles as build

    return asdict(build())


@shared_task(name="aigc_django.refresh_profiles", acks_late=True, ignore_result=True)
def refresh_profiles() -> int:
    """Update the profiles of visitors seen since their last build (every few minutes)."""
    from aigc_django.profiles.build import refresh_profiles as refresh

    return refresh()


@shared_task(name="aigc_django.plan_generation", acks_late=True, ignore_result=True)
def plan_generation() -> int:
    """Queue generation jobs for every (slot, segment) cell that lacks variants (hourly)."""
    from aigc_django.generation.service import plan_generation as plan

    return len(plan())


@shared_task(
    bind=True,
    name="aigc_django.generate_variants",
    acks_late=True,
    reject_on_worker_lost=True,
    ignore_result=True,
)
def generate_variants(self, job_id: int) -> int:
    """Run one generation job (queue ``AIGC["GENERATION"]["QUEUE"]``, "aigc_gpu").

    Acknowledged only when done, so a job whose worker dies goes back to the queue; the job
    is idempotent, so the re-run makes only the variants still missing. Transient backend
    errors and the soft time limit are retried with exponential backoff.
    """
    from celery.exceptions import SoftTimeLimitExceeded

    from aigc_django.conf import aigc_settings
    from aigc_django.generation.backends import TransientBackendError
    from aigc_django.generation.service import mark_failed, run_job

    try:
        return run_job(job_id).variants.count()
    except (TransientBackendError, SoftTimeLimitExceeded) as exc:
        options = aigc_settings.GENERATION
        if self.request.retries >= options["MAX_RETRIES"]:
            mark_failed(job_id, f"gave up after {self.request.retries + 1} attempts: {exc!r}")
            raise
        countdown = options["RETRY_BACKOFF"] * 2**self.request.retries
        raise self.retry(exc=exc, countdown=countdown, max_retries=options["MAX_RETRIES"]) from exc


@shared_task(bind=True, name="aigc_django.train_copy_model", acks_late=True, ignore_result=True)
def train_copy_model(self, epochs: int | None = None) -> dict:
    """Train the builtin copy model on the shop's text; a new active ``ModelArtifact``."""
    import logging

    from celery.backends.base import DisabledBackend

    from aigc_django.generation.copymodel.train import train_copy_model as train

    logger = logging.getLogger("aigc_django.generation")
    reports = not isinstance(self.backend, DisabledBackend) and not self.request.is_eager

    def progress(step: int, total: int) -> None:
        if reports:  # visible through AsyncResult(task_id).info with a result backend
            self.update_state(state="PROGRESS", meta={"step": step, "total": total})
        if total and step % max(1, total // 10) == 0:
            logger.info("Training the copy model: step %s of %s", step, total)

    kwargs = {"epochs": epochs} if epochs else {}
    artifact = train(progress=progress, **kwargs)
    return {"version": artifact.version, "metrics": artifact.metrics}


@shared_task(bind=True, name="aigc_django.train_layout_model", acks_late=True, ignore_result=True)
def train_layout_model(self, epochs: int | None = None) -> dict:
    """Train the banner layout model; a new active ``ModelArtifact(kind="layout")``.

    Too few layouts to train on raises ``TooFewLayouts`` and changes nothing."""
    import logging

    from celery.backends.base import DisabledBackend

    from aigc_django.generation.layouts.train import train_layout_model as train

    logger = logging.getLogger("aigc_django.generation")
    reports = not isinstance(self.backend, DisabledBackend) and not self.request.is_eager

    def progress(step: int, total: int) -> None:
        if reports:  # visible through AsyncResult(task_id).info with a result backend
            self.update_state(state="PROGRESS", meta={"step": step, "total": total})
        if total and step % max(1, total // 10) == 0:
            logger.info("Training the layout model: step %s of %s", step, total)

    artifact = train(epochs=epochs, progress=progress)
    return {"version": artifact.version, "metrics": artifact.metrics}


@shared_task(bind=True, name="aigc_django.train_gan_model", acks_late=True, ignore_result=True)
def train_gan_model(self, epochs: int | None = None) -> dict:
    """Train the image GAN on the shop's images; a new active ``ModelArtifact(kind="gan")``.

    Too few images to train on raises ``TooFewImages`` and changes nothing."""
    import logging

    from celery.backends.base import DisabledBackend

    from aigc_django.generation.gan.train import train_gan_model as train

    logger = logging.getLogger("aigc_django.generation")
    reports = not isinstance(self.backend, DisabledBackend) and not self.request.is_eager

    def progress(step: int, total: int) -> None:
        if reports:  # visible through AsyncResult(task_id).info with a result backend
            self.update_state(state="PROGRESS", meta={"step": step, "total": total})
        if total and step % max(1, total // 10) == 0:
            logger.info("Training the image GAN: step %s of %s", step, total)

    artifact = train(epochs=epochs, progress=progress)
    return {"version": artifact.version, "metrics": artifact.metrics}


def beat_schedule(queue: str = "aigc", flush_every: float = 10.0) -> dict:
    """Entries for ``CELERY_BEAT_SCHEDULE``, e.g. ``CELERY_BEAT_SCHEDULE = {**beat_schedule()}``.

    Safe to call inside settings.py: it reads no settings (pass the queue of
    ``AIGC["CELERY_QUEUE"]`` if you changed it).
    """
    from celery.schedules import crontab

    def options() -> dict:
        return {"queue": queue}

    return {
        "aigc-flush-events": {
            "task": "aigc_django.flush_events",
            "schedule": flush_every,
            "options": options(),
        },
        "aigc-refresh-profiles": {
            "task": "aigc_django.refresh_profiles",
            "schedule": 300.0,
            "options": options(),
        },
        "aigc-build-profiles": {
            "task": "aigc_django.build_profiles",
            "schedule": crontab(hour=2, minute=30),
            "options": options(),
        },
        "aigc-plan-generation": {
            "task": "aigc_django.plan_generation",
            "schedule": crontab(minute=45),
            "options": options(),
        },
        "aigc-purge-events": {
            "task": "aigc_django.purge_events",
            "schedule": crontab(hour=3, minute=17),
            "options": options(),
        },
        "aigc-flush-feedback": {
            "task": "aigc_django.flush_feedback",
            "schedule": 60.0,
            "options": options(),
        },
    }


def task_routes(queue: str = "aigc", gpu_queue: str = "aigc_gpu") -> dict:
    """``CELERY_TASK_ROUTES`` for the app: generation and training on ``gpu_queue``, the rest
    on ``queue``. Reads no settings (pass your names if you changed the queues)."""
    return {
        "aigc_django.generate_variants": {"queue": gpu_queue},
        "aigc_django.train_copy_model": {"queue": gpu_queue},
        "aigc_django.train_layout_model": {"queue": gpu_queue},
        "aigc_django.train_gan_model": {"queue": gpu_queue},
        "aigc_django.*": {"queue": queue},
    }


@shared_task(name="aigc_django.rerender_variant", acks_late=True, ignore_result=True)
def rerender_variant(variant_id: int) -> None:
    """Draw a variant's banners again after an editor changed its copy, and check it again.

    Sent by ``aigc_django.moderation.review.edit_copy`` once the edit commits. A variant
    deleted in the meantime is skipped.
    """
    from aigc_django.generation.service import rerender_variant as rerender
    from aigc_django.models import Variant

    try:
        rerender(variant_id)
    except Variant.DoesNotExist:
        return


@shared_task(name="aigc_django.flush_feedback", acks_late=True, ignore_result=True)
def flush_feedback() -> int:
    """Move cached impression, click and conversion counts to the variants (every minute).

    Safe to run twice at once or again after a crash: each minute's counts are added once.
    """
    from aigc_django.delivery.counters import flush_counters

    return flush_counters()
