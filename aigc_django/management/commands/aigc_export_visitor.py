from __future__ import annotations

import json

from django.core.management.base import BaseCommand, CommandParser

from aigc_django.management.commands._visitor import add_visitor_arguments, visitor_ids
from aigc_django.tracking.privacy import export_visitor


class Command(BaseCommand):
    help = (
        "Export everything stored about one visitor as JSON (to stdout, or --output FILE). "
        "Exits 1 when the visitor is unknown."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        add_visitor_arguments(parser)
        parser.add_argument("--output", "-o", help="Write the JSON to this file.")

    def handle(self, *args, visitor: str | None, user: str | None, output: str | None, **options):
        exports = [export_visitor(visitor_id) for visitor_id in visitor_ids(visitor, user)]
        data = exports[0] if len(exports) == 1 else exports
        text = json.dumps(data, indent=2, ensure_ascii=False)
        if output:
            with open(output, "w", encoding="utf-8") as handle:
                handle.write(text + "\n")
            self.stderr.write(f"Wrote {output}.")
        else:
            self.stdout.write(text)
