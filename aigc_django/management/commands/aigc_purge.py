from __future__ import annotations

from django.core.management.base import BaseCommand, CommandParser

from aigc_django.conf import aigc_settings
from aigc_django.tracking.privacy import purge


class Command(BaseCommand):
    help = (
        "Delete events older than the retention window (AIGC['RETENTION_DAYS'], or --days) "
        "and anonymous visitors left without events. Run it daily from cron or Celery beat."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--days",
            type=int,
            default=None,
            help="Keep this many days instead of AIGC['RETENTION_DAYS'].",
        )

    def handle(self, *args, days: int | None, **options) -> None:
        if days is not None and days < 1:
            self.stderr.write("--days must be at least 1.")
            raise SystemExit(2)
        result = purge(days=days)
        kept = days if days is not None else aigc_settings.RETENTION_DAYS
        self.stdout.write(
            f"Deleted {result['events']} events and {result['visitors']} visitors older than "
            f"{kept} days (before {result['cutoff']})."
        )
