from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError, CommandParser
from tqdm import tqdm

from aigc_django.generation import service
from aigc_django.models import GenerationJob, Segment, Slot


class Command(BaseCommand):
    help = (
        "Generate pending variants. Without --count, plans a job for every active "
        "(slot, segment) cell with fewer variants than the slot wants; with --slot, "
        "--segment and --count, makes that many for one cell. Jobs run here with a "
        "progress bar, or go to the Celery queue with --queue."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--slot", help="Only this slot (its key).")
        parser.add_argument("--segment", help="Only this segment (its key).")
        parser.add_argument(
            "--count", type=int, help="Make this many variants per cell, whatever the coverage."
        )
        parser.add_argument(
            "--queue",
            action="store_true",
            help="Send the jobs to the Celery generation queue instead of running them here.",
        )
        parser.add_argument("--no-progress", action="store_true", help="No progress bar.")

    def handle(
        self,
        *args,
        slot: str | None,
        segment: str | None,
        count: int | None,
        queue: bool,
        no_progress: bool,
        **options,
    ) -> None:
        slots = Slot.objects.filter(active=True)
        segments = Segment.objects.filter(active=True)
        if slot:
            slots = slots.filter(key=slot)
            if not slots:
                raise CommandError(f"No active slot with key {slot!r}.")
        if segment:
            segments = segments.filter(key=segment)
            if not segments:
                raise CommandError(f"No active segment with key {segment!r}.")
        if count is not None:
            if count < 1:
                raise CommandError("--count must be at least 1.")
            jobs = [
                job
                for s in slots
                for g in segments
                if (job := service.create_job(s, g, count)) is not None
            ]
        else:
            jobs = service.plan_generation(slots, segments, dispatch=False)
        if not jobs:
            self.stdout.write("Every cell has the variants it wants; nothing to do.")
            return
        if queue:
            for job in jobs:
                service.enqueue(job)
            self.stdout.write(f"Queued {len(jobs)} jobs.")
            return
        total = sum(job.count for job in jobs)
        failed = 0
        with tqdm(total=total, desc="variants", disable=no_progress, file=self.stderr) as bar:
            for job in jobs:
                bar.set_postfix_str(f"{job.slot.key}/{job.segment.key}")
                before = [0]

                def progress(done: int, _total: int, before: list[int] = before) -> None:
                    bar.update(done - before[0])
                    before[0] = done

                try:
                    service.run_job(job.pk, progress=progress)
                except Exception as exc:  # reported; the other jobs go on
                    failed += 1
                    self.stderr.write(f"Job {job.pk} ({job.slot.key}/{job.segment.key}): {exc}")
        made = sum(GenerationJob.objects.get(pk=job.pk).variants.count() for job in jobs)
        self.stdout.write(f"Made {made} pending variants in {len(jobs) - failed} jobs.")
        if failed:
            raise CommandError(f"{failed} of {len(jobs)} jobs failed (see above).")
