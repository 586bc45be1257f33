"""Quality of the builtin copy model on an example-sized shop.

    .venv/bin/python benchmarks/copy_quality.py [--per-category 50] [--variants 30]
        [--epochs 12] [--seed 0]

Builds the example project's catalog (``example_project/shop/catalog_data.py``: six
categories, ``--per-category`` products each, with their descriptions and prices) in a fresh
SQLite database through the test shop app (``tests.shopapp``, the app's catalog mapping), three
learned segments with their top categories and products, and a banner slot with the default
fields (headline 60, body 160, cta 24 characters), and no approved copy yet (a fresh shop).
It trains the model with ``train_copy_model()`` at its defaults and generates ``--variants``
variants per segment through the ``builtin`` backend, in batches of
``AIGC["GENERATION"]["BATCH_SIZE"]`` briefs, as a generation job would. It prints:

- fact accuracy: the share of drafts for which ``quality.fact_errors`` finds nothing against
  the whole catalog and the brief (goal 100%);
- limits kept: the share of fields within their length limit (goal 100%);
- distinct-2 over each segment's variants (all fields);
- relevance: the share of a segment's copy that names one of its top categories or products,
  against the same measure on the copy generated for the next segment (the baseline).
"""

from __future__ import annotations

import argparse
import itertools
import os
import random
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import ROOT, configure_throwaway_site

FIELDS = {"headline": 60, "body": 160, "cta": 24}
# Segment key -> top categories (with shares), as a profile rebuild would store them.
SEGMENTS = {
    "outdoor-people": [["outdoor", 0.6], ["shoes", 0.3]],
    "home-cooks": [["kitchen", 0.7], ["beauty", 0.2]],
    "readers": [["books", 0.6], ["toys", 0.3]],
}
PRODUCTS_PER_BRIEF = 6


def setup_django(model_dir: str | None = None) -> None:
    """A throwaway SQLite site with the app and the test shop app as its catalog."""
    example = str(ROOT / "example_project")
    if example not in sys.path:
        sys.path.insert(0, example)
    workdir = tempfile.mkdtemp(prefix="aigc-copy-bench-")
    configure_throwaway_site(
        f"{workdir}/db.sqlite3",
        ["aigc_django", "tests.shopapp"],
        run_syncdb=True,
        AIGC={
            "CATALOG": {
                "MODEL": "shopapp.Product",
                "FIELDS": {
                    "key": "sku",
                    "title": "name",
                    "description": "description",
                    "price": "price",
                    "category": "category__slug",
                },
            },
            "MODEL_DIR": model_dir or f"{workdir}/models",
            "PROFILES": {"DEVICE": "cpu"},
            "COPY_BACKENDS": {
                "default": {
                    "BACKEND": "aigc_django.generation.backends.builtin_copy.BuiltinCopyBackend",
                    "OPTIONS": {"DEVICE": "cpu"},
                }
            },
        },
    )


def seed_shop(per_category: int, seed: int = 0) -> None:
    """The example project's catalog (names, descriptions, prices), segments and a slot."""
    from shop.catalog_data import AUTHOR_FIRST, AUTHOR_LAST, BOOK_GENRES, CATEGORIES

    from aigc_django.models import Segment, Slot
    from tests.shopapp.models import Category, Product

    for words in CATEGORIES:
        rng = random.Random(f"{seed}:{words.slug}")
        category = Category.objects.create(slug=words.slug, name=words.name)
        names = [" ".join(parts) for parts in itertools.product(*words.name_parts)]
        rng.shuffle(names)
        products = []
        for n, name in enumerate(names[:per_category]):
            first, second = rng.sample(words.features, 2)
            use, closing = rng.choice(words.uses), rng.choice(words.closings)
            if words.slug == "books":
                author = f"{rng.choice(AUTHOR_FIRST)} {rng.choice(AUTHOR_LAST)}"
                description = (
                    f"{name} is a {rng.choice(BOOK_GENRES)} by {author}, with {first} and "
                    f"{second}. Just right for {use}. {closing}"
                )
            else:
                description = (
                    f"The {name} comes with {first} and {second}. Made for {use}. {closing}"
                )
            low, high = words.price_range
            price = Decimal(f"{rng.randint(low, high)}.{rng.choice(('00', '49', '95', '99'))}")
            products.append(
                Product(
                    sku=f"{words.slug[:3].upper()}-{n:04d}",
                    name=name,
                    description=description,
                    price=price,
                    category=category,
                )
            )
        Product.objects.bulk_create(products)
    for key, tops in SEGMENTS.items():
        categories = [c for c, _ in tops]
        items = list(
            Product.objects.filter(category__slug__in=categories)
            .order_by("sku")
            .values_list("sku", flat=True)[:10]
        )
        Segment.objects.create(
            key=key, name=key.replace("-", " ").title(), top_categories=tops, top_items=items
        )
    Slot.objects.create(
        key="home-hero",
        name="Home hero",
        copy_fields=FIELDS,
        brief="The big banner on the home page: one product or category the visitor likes.",
    )


def brief(segment, slot, seed: int):
    """The brief a generation job builds: the segment's top categories and products."""
    from aigc_django.catalog import get_catalog
    from aigc_django.generation.briefs import Brief, Product, category_name

    items = list(get_catalog().items(segment.top_items[:PRODUCTS_PER_BRIEF]))
    order = {key: i for i, key in enumerate(segment.top_items)}
    items.sort(key=lambda item: order[item.key])
    return Brief(
        slot=slot.key,
        segment=segment.key,
        segment_name=segment.name,
        fields=dict(slot.copy_fields),
        categories=[(c, category_name(c)) for c, _ in segment.top_categories],
        products=[
            Product(
                key=i.key,
                title=i.title,
                category=i.category,
                category_name=category_name(i.category),
                price=i.price,
                description=i.description,
            )
            for i in items
        ],
        slot_brief=slot.brief,
        seed=seed,
    )


def segment_names(segment) -> list[str]:
    """What naming the segment means: its top categories' names and top products' titles."""
    from aigc_django.catalog import get_catalog
    from aigc_django.generation.briefs import category_name

    titles = [item.title for item in get_catalog().items(segment.top_items)]
    return [category_name(c) for c, _ in segment.top_categories] + titles


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--per-category", type=int, default=50)
    parser.add_argument("--variants", type=int, default=30)
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    setup_django()
    import torch

    from aigc_django.conf import aigc_settings
    from aigc_django.generation.backends import copy_backend
    from aigc_django.generation.copymodel.quality import (
        CatalogFacts,
        distinct_n,
        fact_errors,
        segment_relevance,
    )
    from aigc_django.generation.copymodel.train import DEFAULT_EPOCHS, train_copy_model
    from aigc_django.models import Segment, Slot

    seed_shop(args.per_category, args.seed)
    artifact = train_copy_model(epochs=args.epochs or DEFAULT_EPOCHS, seed=args.seed)
    m = artifact.metrics
    print(
        f"Shop: {m['sources']['items']} products in 6 categories, {len(SEGMENTS)} segments, "
        f"no approved copy yet; torch {torch.__version__}, {torch.get_num_threads()} threads."
    )
    print(
        f"Trained copy model v{artifact.version}: {m['examples']} examples, vocabulary "
        f"{m['vocab']}, {m['parameters']:,} parameters, {m['epochs']} epochs, {m['seconds']}s "
        f"on {m['device']}; held-out loss {m['heldout_loss']}, perplexity "
        f"{m['heldout_perplexity']}."
    )

    backend = copy_backend()
    slot = Slot.objects.get(key="home-hero")
    segments = list(Segment.objects.filter(key__in=SEGMENTS).order_by("key"))
    facts = CatalogFacts.from_catalog()
    batch = int(aigc_settings.GENERATION["BATCH_SIZE"])
    texts: dict[str, list[str]] = {}
    drafts_total = fields_total = fields_kept = facts_ok = truncated = fallback = 0
    examples = {}
    started = time.perf_counter()
    for segment in segments:
        briefs = [brief(segment, slot, args.seed * 100_000 + n) for n in range(args.variants)]
        texts[segment.key] = []
        for start in range(0, len(briefs), batch):
            chunk = briefs[start : start + batch]
            for b, draft in zip(chunk, backend.generate(chunk), strict=True):
                drafts_total += 1
                errors = fact_errors(draft.fields, facts, b)
                facts_ok += not errors
                for name, limit in b.fields.items():
                    fields_total += 1
                    fields_kept += len(draft.fields[name]) <= limit
                truncated += bool(draft.notes.get("truncated"))
                fallback += bool(draft.notes.get("fallback"))
                texts[segment.key].append(" ".join(draft.fields.values()))
                examples.setdefault(segment.key, []).append((draft.fields, errors))
    elapsed = time.perf_counter() - started

    print(
        f"\nGenerated {drafts_total} drafts ({args.variants} per segment, "
        f"{backend._candidates()} candidates per field) in {elapsed:.1f}s."
    )
    print(f"Fact accuracy: {facts_ok}/{drafts_total} = {facts_ok / drafts_total:.1%} (goal 100%)")
    print(
        f"Field limits kept: {fields_kept}/{fields_total} = {fields_kept / fields_total:.1%} "
        f"(goal 100%); drafts with a field cut to fit: {truncated}, with a fallback field: "
        f"{fallback}"
    )
    print()
    header = f"{'segment':<16} {'distinct-2':>10} {'relevance':>10} {'baseline':>10}  baseline from"
    print(header)
    print("-" * len(header))
    for index, segment in enumerate(segments):
        other = segments[(index + 1) % len(segments)]
        names = segment_names(segment)
        own = segment_relevance(texts[segment.key], names)
        base = segment_relevance(texts[other.key], names)
        print(
            f"{segment.key:<16} {distinct_n(texts[segment.key], 2):>10.3f} {own:>10.1%} "
            f"{base:>10.1%}  {other.key}'s copy"
        )
    print("\nFirst three drafts per segment:")
    for key, rows in examples.items():
        print(f"  {key}:")
        for fields, errors in rows[:3]:
            print(f"    {fields}" + (f"  ERRORS {errors}" if errors else ""))


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "2")
    main()
