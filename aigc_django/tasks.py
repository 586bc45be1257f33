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
        "aigc-purge-events": {
            "task": "aigc_django.purge_events",
            "schedule": crontab(hour=3, minute=17),
            "options": options(),
        },
    }
