"""Personalization uplift on the simulator: segments + Thompson sampling vs uniform.

Visitors follow the personas of :mod:`aigc_django.profiles.simulator` (hidden tastes: each
persona spends ~80% of its browsing in its favourite category). Every approved variant is
about one category and has a hidden quality. A visitor clicks a variant with probability

    p = LOW + (HIGH - LOW) * taste(persona, category) * quality

where ``taste`` is the persona's category weight over its largest (1 for the favourite,
~0.03 for the rest), so a matching variant is clicked often and the others rarely.

Segments are learned, not read from the hidden persona: each visitor's browsing is a sample
of category views drawn from their persona (``--views`` per visitor), and k-means on those
histograms (k = the number of personas, k-means++ seeding) gives the segments. As the
generation stage does, each segment gets the variants about its centroid's top
categories (``--segment-categories``). Policies, over the same stream of visitors and the
same number of impressions:

- ``personalized``: the visitor's segment, then Thompson sampling
  (:func:`aigc_django.delivery.bandit.thompson_pick_many`) over that segment's variants,
  with counters updated in batches of ``--flush-every`` impressions (the beat flush);
- ``segments, uniform``: the segment's variants, picked uniformly (what the bandit adds);
- ``baseline``: uniform over all approved variants (not personalized).

Regret is the oracle's click probability (the best variant for that visitor's persona)
minus the chosen variant's, summed over impressions.

``.venv/bin/python benchmarks/uplift.py [--impressions 200000] [--seed 0] [--plot PATH]``
"""

from __future__ import annotations

import argparse
import random
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from aigc_django.delivery.bandit import thompson_pick_many  # noqa: E402
from aigc_django.profiles.simulator import (  # noqa: E402
    DEFAULT_CATEGORIES,
    make_items,
    make_personas,
)

HIGH = 0.12
LOW = 0.01
GOAL = 1.5


@dataclass
class Shop:
    categories: tuple[str, ...]
    tastes: np.ndarray  # persona x category, the persona's weight over its largest
    weights: np.ndarray  # persona x category, browsing probabilities
    variant_category: np.ndarray  # variant -> category index
    quality: np.ndarray  # variant -> hidden quality

    def click_probability(self, persona: np.ndarray, variant: np.ndarray) -> np.ndarray:
        taste = self.tastes[persona, self.variant_category[variant]]
        return LOW + (HIGH - LOW) * taste * self.quality[variant]


def make_shop(personas: int, variants_per_category: int, seed: int) -> Shop:
    rng = random.Random(seed)
    categories = DEFAULT_CATEGORIES
    items = make_items(categories, 2, rng)
    made = make_personas(personas, categories, items, rng)
    weights = np.array([[p.category_weights[c] for c in categories] for p in made])
    weights /= weights.sum(axis=1, keepdims=True)
    tastes = weights / weights.max(axis=1, keepdims=True)
    generator = np.random.default_rng(seed)
    variant_category = np.repeat(np.arange(len(categories)), variants_per_category)
    quality = generator.uniform(0.6, 1.0, size=variant_category.size)
    return Shop(categories, tastes, weights, variant_category, quality)


def kmeans(points: np.ndarray, k: int, generator: np.random.Generator) -> np.ndarray:
    """Labels of plain k-means with k-means++ seeding (50 iterations at most)."""
    centers = [points[generator.integers(len(points))]]
    for _ in range(1, k):
        distance = np.min([((points - c) ** 2).sum(axis=1) for c in centers], axis=0)
        centers.append(points[generator.choice(len(points), p=distance / distance.sum())])
    centroids = np.array(centers)
    labels = np.zeros(len(points), dtype=int)
    for _ in range(50):
        distance = ((points[:, None, :] - centroids[None, :, :]) ** 2).sum(axis=2)
        new_labels = distance.argmin(axis=1)
        if np.array_equal(new_labels, labels):
            break
        labels = new_labels
        for j in range(k):
            if (labels == j).any():
                centroids[j] = points[labels == j].mean(axis=0)
    return labels


def learn_segments(
    shop: Shop, visitors: int, views: int, top: int, generator: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, list[np.ndarray], float]:
    """Visitors' hidden personas, their learned segments, each segment's variants, and
    the share of visitors whose segment's majority persona is their own (purity)."""
    persona = generator.integers(len(shop.weights), size=visitors)
    histograms = np.array([generator.multinomial(views, shop.weights[p]) for p in persona])
    histograms = histograms / views
    segment = kmeans(histograms, len(shop.weights), generator)
    segment_variants = []
    pure = 0
    for j in range(len(shop.weights)):
        members = segment == j
        if not members.any():
            segment_variants.append(np.arange(shop.variant_category.size))
            continue
        pure += np.bincount(persona[members]).max()
        centroid = histograms[members].mean(axis=0)
        categories = np.argsort(-centroid)[:top]
        segment_variants.append(np.flatnonzero(np.isin(shop.variant_category, categories)))
    return persona, segment, segment_variants, pure / visitors


@dataclass
class Run:
    name: str
    clicks: np.ndarray  # cumulative clicks after each impression
    regret: np.ndarray  # cumulative expected regret


def simulate(args: argparse.Namespace) -> tuple[list[Run], dict[str, float]]:
    shop = make_shop(args.personas, args.variants_per_category, args.seed)
    generator = np.random.default_rng(args.seed + 1)
    persona, segment, segment_variants, purity = learn_segments(
        shop, args.visitors, args.views, args.segment_categories, generator
    )
    all_variants = np.arange(shop.variant_category.size)
    best = np.array(
        [
            shop.click_probability(np.full(all_variants.size, p), all_variants).max()
            for p in range(len(shop.weights))
        ]
    )
    # One stream of visitors and one uniform draw per impression, shared by every policy.
    stream = generator.integers(args.visitors, size=args.impressions)
    coins = generator.random(args.impressions)

    def outcome(name: str, chosen: np.ndarray) -> Run:
        visitor_persona = persona[stream]
        probability = shop.click_probability(visitor_persona, chosen)
        clicked = coins < probability
        regret = best[visitor_persona] - probability
        return Run(name, np.cumsum(clicked), np.cumsum(regret))

    baseline = generator.choice(all_variants, size=args.impressions)
    uniform_in_segment = np.empty(args.impressions, dtype=int)
    for j, variants in enumerate(segment_variants):
        where = np.flatnonzero(segment[stream] == j)
        uniform_in_segment[where] = generator.choice(variants, size=where.size)

    # Thompson sampling per segment, counters refreshed every flush_every impressions.
    chosen = np.empty(args.impressions, dtype=int)
    impressions = np.zeros((len(segment_variants), all_variants.size))
    clicks = np.zeros_like(impressions)
    for start in range(0, args.impressions, args.flush_every):
        stop = min(start + args.flush_every, args.impressions)
        block = np.arange(start, stop)
        block_segment = segment[stream[block]]
        for j, variants in enumerate(segment_variants):
            where = block[block_segment == j]
            if not where.size:
                continue
            picks = thompson_pick_many(
                impressions[j, variants], clicks[j, variants], where.size, generator
            )
            chosen[where] = variants[picks]
        probability = shop.click_probability(persona[stream[block]], chosen[block])
        clicked = coins[block] < probability
        np.add.at(impressions, (block_segment, chosen[block]), 1)
        np.add.at(clicks, (block_segment, chosen[block]), clicked)

    runs = [
        outcome("personalized", chosen),
        outcome("segments, uniform", uniform_in_segment),
        outcome("baseline", baseline),
    ]
    return runs, {"purity": purity, "oracle_ctr": float(best[persona[stream]].mean())}


def plot(runs: list[Run], path: Path, impressions: int) -> None:
    """Cumulative clicks and cumulative regret over impressions, drawn with Pillow."""
    from PIL import Image, ImageDraw, ImageFont

    width, height, margin = 1200, 520, 70
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default()
    colours = {"personalized": "#d97706", "segments, uniform": "#2563eb", "baseline": "#6b7280"}
    panel_width = (width - 3 * margin) // 2
    for index, (title, attribute) in enumerate(
        [("Cumulative clicks", "clicks"), ("Cumulative regret (expected clicks lost)", "regret")]
    ):
        left = margin + index * (panel_width + margin)
        top, bottom = 50, height - margin
        right = left + panel_width
        top_value = max(float(getattr(run, attribute)[-1]) for run in runs) * 1.05
        draw.rectangle([left, top, right, bottom], outline="#111827")
        draw.text((left, 20), title, fill="#111827", font=font)
        for tick in range(5):
            value = top_value * tick / 4
            y = bottom - (bottom - top) * tick / 4
            draw.line([left - 5, y, left, y], fill="#111827")
            draw.text((left - 60, y - 6), f"{value:,.0f}", fill="#111827", font=font)
            x = left + (right - left) * tick / 4
            draw.line([x, bottom, x, bottom + 5], fill="#111827")
            draw.text((x - 20, bottom + 10), f"{impressions * tick / 4:,.0f}", fill="#111827")
        draw.text((left + panel_width // 2 - 40, bottom + 30), "impressions", fill="#111827")
        for run in runs:
            series = getattr(run, attribute)
            steps = np.linspace(0, len(series) - 1, 400).astype(int)
            points = [
                (
                    left + (right - left) * step / (len(series) - 1),
                    bottom - (bottom - top) * float(series[step]) / top_value,
                )
                for step in steps
            ]
            draw.line(points, fill=colours[run.name], width=3)
        for row, run in enumerate(runs):
            y = top + 10 + row * 16
            draw.line([left + 10, y + 6, left + 40, y + 6], fill=colours[run.name], width=3)
            draw.text((left + 46, y), run.name, fill="#111827", font=font)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--impressions", type=int, default=200_000)
    parser.add_argument("--visitors", type=int, default=20_000)
    parser.add_argument("--personas", type=int, default=6)
    parser.add_argument("--variants-per-category", type=int, default=3)
    parser.add_argument("--views", type=int, default=8, help="category views per visitor")
    parser.add_argument("--segment-categories", type=int, default=2)
    parser.add_argument("--flush-every", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--plot", type=Path, default=ROOT / "docs" / "img" / "uplift.png")
    args = parser.parse_args()

    runs, facts = simulate(args)
    by_name = {run.name: run for run in runs}
    n = args.impressions
    variants = len(DEFAULT_CATEGORIES) * args.variants_per_category
    print(
        f"{n:,} impressions, {args.visitors:,} visitors, {args.personas} personas, "
        f"{variants} approved variants (one category each), seed {args.seed}"
    )
    print(
        f"segments: k-means on {args.views} category views per visitor; "
        f"purity {facts['purity']:.3f}; oracle CTR {facts['oracle_ctr']:.4f}"
    )
    print(f"{'policy':<20} {'clicks':>8} {'CTR':>8} {'regret':>9} {'vs baseline':>12}")
    baseline_clicks = float(by_name["baseline"].clicks[-1])
    for run in runs:
        total = float(run.clicks[-1])
        print(
            f"{run.name:<20} {total:>8,.0f} {total / n:>8.4f} {float(run.regret[-1]):>9,.0f} "
            f"{total / baseline_clicks:>11.2f}x"
        )
    ratio = float(by_name["personalized"].clicks[-1]) / baseline_clicks
    print(
        f"uplift (personalized / baseline CTR): {ratio:.2f}x, goal >= {GOAL}x: "
        f"{'met' if ratio >= GOAL else 'NOT met'}"
    )
    plot(runs, args.plot, n)
    print(f"plot: {args.plot.relative_to(ROOT) if args.plot.is_relative_to(ROOT) else args.plot}")
    return 0 if ratio >= GOAL else 1


if __name__ == "__main__":
    raise SystemExit(main())
