from __future__ import annotations

from django.core.management.base import BaseCommand, CommandParser
from tqdm import tqdm

from aigc_django.profiles.build import build_profiles, refresh_profiles


class Command(BaseCommand):
    help = (
        "Rebuild visitor profiles and segments from all events: decayed interests, RFM, "
        "matrix factorization, k-means segments (keys kept stable across rebuilds) and rule "
        "segments. Prints a table of segments. With --incremental, only updates visitors "
        "seen since their profile was built."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--incremental",
            action="store_true",
            help="Update only visitors seen since their last build; keep the segments.",
        )
        parser.add_argument("--no-progress", action="store_true", help="No progress bar.")

    def handle(self, *args, incremental: bool, no_progress: bool, **options) -> None:
        if incremental:
            self.stdout.write(f"Updated {refresh_profiles()} profiles.")
            return
        bar = tqdm(total=5, desc="rebuild", disable=no_progress, file=self.stderr, leave=False)

        def progress(stage: str, done: int, total: int) -> None:
            # Called as each stage finishes, and per chunk while profiles are written.
            if stage == "write profiles":
                bar.set_postfix_str(f"profiles {min(done, total)}/{total}")
            else:
                bar.set_postfix_str(f"{stage} done")
                bar.update(1)

        try:
            report = build_profiles(progress=progress)
        finally:
            bar.close()
        self.stdout.write(
            f"{report.visitors} visitors ({report.eligible} with enough events), "
            f"{report.events} events, {report.items} items, {report.k} learned segments, "
            f"on {report.device}."
        )
        rows = [("segment", "kind", "visitors", "top categories")]
        for s in report.segments:
            name = f"{s.name} [{s.key}]" + (" (new)" if s.is_new else "")
            top = ", ".join(f"{c} {share:.0%}" for c, share in s.top_categories)
            rows.append((name, s.kind, str(s.size), top))
        widths = [max(len(r[i]) for r in rows) for i in range(4)]
        for index, row in enumerate(rows):
            self.stdout.write("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)))
            if index == 0:
                self.stdout.write("  ".join("-" * w for w in widths))
        timings = ", ".join(f"{stage} {seconds:.1f}s" for stage, seconds in report.timings.items())
        self.stdout.write(f"Timings: {timings}.")
