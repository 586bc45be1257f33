from __future__ import annotations

import time

from django.core.management.base import BaseCommand, CommandParser

from aigc_django.delivery.counters import BUCKET_SECONDS, flush_counters


class Command(BaseCommand):
    help = (
        "Move the impression, click and conversion counts waiting in the cache to the "
        "variants' counters. The aigc_django.flush_feedback beat task does this every minute; "
        "each minute's counts are added once, however often this runs."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--include-open",
            action="store_true",
            help=(
                "Also flush the current and the previous minute. Only when nothing is "
                "counting any more (a demo, a shutdown): a count that arrives in a minute "
                "after it was flushed is lost."
            ),
        )

    def handle(self, *args, include_open: bool, **options) -> None:
        now = time.time() + 2 * BUCKET_SECONDS if include_open else None
        moved = flush_counters(now=now)
        self.stdout.write(f"Flushed {moved} impressions, clicks and conversions.")
