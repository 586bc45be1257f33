"""Training layouts: the composer's own, and those of approved and clicked variants.

* Composer layouts: ``compose.plan`` is run on made-up banners that vary what a shop's
  banners vary (slot size and shape, headline and body length, call to action, zero to
  three products of any shape, logo or none, segment). Each fixed layout also yields the
  same layout mirrored left to right and, for stacked and row layouts, with its column
  centred: alternatives that keep every constraint of the original (the boxes move, their
  sizes do not), so the model learns more than one way to lay out a banner.
* Variant layouts: every size of every approved variant, and of every variant visitors
  clicked, as ``Variant.layout`` recorded it when the banner was drawn. They weigh more
  than composer layouts, and more still the better their click-through (see
  :func:`variant_weight`), so the layouts a shop's visitors respond to become likelier.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from aigc_django.generation import compose
from aigc_django.generation.layouts.encoding import (
    SEGMENT_BUCKETS,
    Condition,
    NormBox,
    normalize,
)

_WORDS = (
    "new season style deals for every home garden kitchen outdoor comfort bold colours save "
    "today fresh picks light warm classic modern soft everyday favourites made to last free "
    "delivery on orders gift ideas the best of our range limited time only discover more "
    "handpicked quality for less weekend offer just landed essentials"
)
WORDS = _WORDS.split()
CTAS = ("Shop now", "Discover", "See the range", "Get yours", "Buy now", "Explore", "Order today")
# A composer layout weighs 1; a variant's layout VARIANT_WEIGHT, times its click-through
# relative to the shop's average plus one.
VARIANT_WEIGHT = 2.0


@dataclass
class LayoutExample:
    condition: Condition
    boxes: dict[str, NormBox]
    weight: float = 1.0
    source: str = "composer"


@dataclass
class LayoutDataset:
    examples: list[LayoutExample] = field(default_factory=list)
    composer: int = 0
    variants: int = 0
    variant_banners: int = 0


def _random_banner(rng: random.Random) -> tuple:
    if rng.random() < 0.5:
        size = rng.choice(compose.SIZES)
    else:
        shape = rng.choice(("strip", "row", "square", "tall"))
        if shape == "strip":
            height = rng.randint(60, 150)
            size = (round(height * rng.uniform(4.0, 10.0)), height)
        elif shape == "row":
            height = rng.randint(200, 700)
            size = (round(height * rng.uniform(1.5, 3.6)), height)
        elif shape == "square":
            side = rng.randint(200, 1100)
            size = (side, round(side * rng.uniform(0.8, 1.2)))
        else:
            width = rng.randint(240, 900)
            size = (width, round(width * rng.uniform(1.2, 2.0)))
    headline = " ".join(rng.choices(WORDS, k=rng.randint(2, 9)))
    body = " ".join(rng.choices(WORDS, k=rng.randint(4, 28))) if rng.random() < 0.7 else ""
    cta = rng.choice(CTAS) if rng.random() < 0.9 else ""
    products = tuple(
        (rng.randint(300, 900), rng.randint(300, 900)) for _ in range(rng.randint(0, 3))
    )
    logo = (rng.randint(200, 600), rng.randint(60, 200)) if rng.random() < 0.5 else None
    segment = rng.randrange(SEGMENT_BUCKETS) if rng.random() < 0.5 else 0
    copy = {"headline": headline, "body": body, "cta": cta}
    return size, copy, products, logo, segment


def variations(layout: compose.Layout, size: tuple[int, int]) -> list[dict[str, compose.Box]]:
    """The fixed layout, mirrored, and (stack and row) with its column centred: each one
    without overlaps and inside the margins, duplicates dropped."""
    width = size[0]
    boxes = dict(layout.boxes)
    found = [boxes]
    found.append({n: (width - b[2], b[1], width - b[0], b[3]) for n, b in boxes.items()})
    if layout.mode in ("stack", "row"):
        m = layout.margin
        products = [b for n, b in boxes.items() if n.startswith("product_")]
        if layout.mode == "row" and products:
            column = (m, min(b[0] for b in products) - layout.gap)
        else:
            column = (m, width - m)
        centred = {}
        for name, box in boxes.items():
            if name.startswith("product_"):
                continue
            w = box[2] - box[0]
            x0 = column[0] + (column[1] - column[0] - w) // 2
            centred[name] = (x0, box[1], x0 + w, box[3])
        if layout.mode == "stack" and products:
            left, right = min(b[0] for b in products), max(b[2] for b in products)
            dx = (m + (width - m - m - (right - left)) // 2) - left
            for name, box in boxes.items():
                if name.startswith("product_"):
                    centred[name] = (box[0] + dx, box[1], box[2] + dx, box[3])
        else:
            centred.update({n: b for n, b in boxes.items() if n.startswith("product_")})
        found.append(centred)
        found.append({n: (width - b[2], b[1], width - b[0], b[3]) for n, b in centred.items()})
    unique, seen = [], set()
    for candidate in found:
        key = tuple(sorted(candidate.items()))
        if key in seen:
            continue
        seen.add(key)
        if not compose.overlaps(candidate) and not compose.outside_margin(
            candidate, size, layout.margin
        ):
            unique.append(candidate)
    return unique


def composer_layouts(
    count: int, seed: int = 0, fonts: tuple[str | None, str | None] = (None, None)
) -> list[LayoutExample]:
    """Layouts of ``count`` made-up banners (and their variations, see the module doc)."""
    rng = random.Random(seed)
    examples = []
    for _ in range(count):
        size, copy, products, logo, segment = _random_banner(rng)
        copy_key = tuple((n, t) for n, t in copy.items() if t)
        layout = compose.plan(size, copy_key, products, logo, fonts)
        if not layout.boxes or layout.truncated:
            continue
        shown = {n: t for n, t in copy.items() if t and n in layout.boxes}
        shown_products = sum(1 for n in layout.boxes if n.startswith("product_"))
        condition = Condition.of(size, shown, shown_products, "logo" in layout.boxes, None)
        condition = Condition(**{**condition.as_dict(), "segment": segment})
        for boxes in variations(layout, size):
            examples.append(LayoutExample(condition, normalize(boxes, size)))
    return examples


def variant_weight(clicks: int, impressions: int, mean_ctr: float) -> float:
    """How much one layout of a variant counts: :data:`VARIANT_WEIGHT`, times one plus its
    click-through over the shop's mean (a variant clicked twice as often as the average
    counts three times as much as one never shown)."""
    if impressions <= 0 or mean_ctr <= 0:
        return VARIANT_WEIGHT
    ctr = min(1.0, clicks / impressions)
    return VARIANT_WEIGHT * (1.0 + ctr / mean_ctr)


def variant_layouts() -> tuple[list[LayoutExample], int]:
    """(layouts of approved and clicked variants, how many variants they came from)."""
    from django.db.models import Q, Sum

    from aigc_django.generation.layouts.encoding import segment_bucket
    from aigc_django.models import Variant

    queryset = (
        Variant.objects.exclude(status=Variant.Status.REJECTED)
        .filter(Q(status=Variant.Status.APPROVED) | Q(clicks__gt=0))
        .exclude(layout={})
        .select_related("segment")
    )
    totals = Variant.objects.filter(impressions__gt=0).aggregate(
        clicks=Sum("clicks"), impressions=Sum("impressions")
    )
    mean_ctr = (totals["clicks"] or 0) / totals["impressions"] if totals["impressions"] else 0.0
    examples, banners = [], 0
    for variant in queryset.iterator():
        weight = variant_weight(variant.clicks, variant.impressions, mean_ctr)
        used = False
        for entry in (variant.layout or {}).values():
            example = _from_record(entry, segment_bucket(variant.segment.key), weight)
            if example is not None:
                examples.append(example)
                used = True
        banners += used
    return examples, banners


def _from_record(entry: object, segment: int, weight: float) -> LayoutExample | None:
    """A stored layout record (see ``compose.Banner.record``) as an example, or None."""
    if not isinstance(entry, dict):
        return None
    try:
        width, height = (int(v) for v in entry["size"])
        raw = entry["boxes"]
        boxes = {str(n): tuple(int(v) for v in b) for n, b in raw.items()}
        content = dict(entry.get("content") or {})
    except (KeyError, TypeError, ValueError):
        return None
    if width <= 0 or height <= 0 or not boxes or any(len(b) != 4 for b in boxes.values()):
        return None
    products = sum(1 for n in boxes if n.startswith("product_"))
    condition = Condition(
        width,
        height,
        min(3, products),
        "logo" in boxes,
        int(content.get("headline") or 0) if "headline" in boxes else 0,
        int(content.get("body") or 0) if "body" in boxes else 0,
        int(content.get("cta") or 0) if "cta" in boxes else 0,
        segment,
    )
    return LayoutExample(condition, normalize(boxes, (width, height)), weight, "variant")  # type: ignore[arg-type]


def build_dataset(
    synthetic: int, seed: int = 0, fonts: tuple[str | None, str | None] = (None, None)
) -> LayoutDataset:
    """Composer layouts of ``synthetic`` made-up banners plus the variants' layouts."""
    composer = composer_layouts(synthetic, seed, fonts) if synthetic > 0 else []
    variants, banners = variant_layouts()
    return LayoutDataset(composer + variants, len(composer), len(variants), banners)
