from __future__ import annotations

from django.core.management.base import BaseCommand

from aigc_django.tracking.ingest import flush_buffer


class Command(BaseCommand):
    help = (
        "Write buffered events to the database now (what the aigc_django.flush_events task "
        "does), including batches that a flusher that died left behind. For cron setups "
        "without Celery beat."
    )

    def handle(self, *args, **options) -> None:
        self.stdout.write(f"Wrote {flush_buffer()} events.")
