from __future__ import annotations

from django.core.management.base import BaseCommand, CommandParser

from aigc_django.management.commands._visitor import add_visitor_arguments, visitor_ids
from aigc_django.tracking.privacy import erase_visitor


class Command(BaseCommand):
    help = (
        "Erase one visitor: their events, profile and visitor record, and every anonymous "
        "visitor merged into them. Exits 1 when the visitor is unknown."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        add_visitor_arguments(parser)

    def handle(self, *args, visitor: str | None, user: str | None, **options) -> None:
        for visitor_id in visitor_ids(visitor, user):
            erased = erase_visitor(visitor_id)
            self.stdout.write(
                f"Erased visitor {visitor_id}: {erased['visitors']} visitor records, "
                f"{erased['events']} events."
            )
