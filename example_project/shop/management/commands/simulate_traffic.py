"""``manage.py simulate_traffic``: simulated shoppers with hidden tastes browse the catalog.

Each simulated visitor follows one of a few personas (favourite categories, favourite
products); their events are written through the app's own ingest path, then profiles and
segments are rebuilt, so the segments page has something to show. The report says how well
the learned segments recovered the hidden personas (adjusted Rand index).
"""

from typing import Any

from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser
from tqdm import tqdm

from aigc_django.models import Profile
from aigc_django.profiles.quality import adjusted_rand_index
from aigc_django.profiles.simulator import SimulatedItem, simulate
from aigc_django.tracking.ingest import write_events
from shop.models import Product

CHUNK = 5000


class Command(BaseCommand):
    help = (
        "Simulate shoppers with hidden personas browsing the catalog, record their events, "
        "and rebuild profiles and segments (run seed_catalog first)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--visitors", type=int, default=800)
        parser.add_argument("--personas", type=int, default=5)
        parser.add_argument("--days", type=int, default=30)
        parser.add_argument("--seed", type=int, default=1)
        parser.add_argument(
            "--no-build", action="store_true", help="Only record events; do not rebuild."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        items = [
            SimulatedItem(p.sku, p.category.slug, float(p.price))
            for p in Product.objects.select_related("category")
        ]
        if not items:
            raise CommandError("The catalog is empty: run `manage.py seed_catalog` first.")
        sim = simulate(
            visitors=options["visitors"],
            personas=options["personas"],
            days=options["days"],
            seed=options["seed"],
            items=items,
        )
        with tqdm(total=len(sim.events), desc="events", unit="ev", file=self.stderr) as bar:
            for start in range(0, len(sim.events), CHUNK):
                part = sim.events[start : start + CHUNK]
                write_events(part)
                bar.update(len(part))
        self.stdout.write(
            f"Recorded {len(sim.events)} events of {len(sim.truth)} simulated visitors "
            f"({options['personas']} hidden personas)."
        )
        if options["no_build"]:
            return
        call_command("aigc_build_profiles", stdout=self.stdout, stderr=self.stderr)
        found = dict(
            Profile.objects.filter(
                visitor_id__in=list(sim.truth), segment__kind="learned"
            ).values_list("visitor_id", "segment__key")
        )
        if found:
            truth = [sim.truth[str(v)] for v in found]
            score = adjusted_rand_index(truth, list(found.values()))
            self.stdout.write(
                f"Learned segments vs hidden personas: adjusted Rand index {score:.2f} "
                f"over {len(found)} visitors (1.0 = perfect recovery)."
            )
