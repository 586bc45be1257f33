"""Simulated shoppers with hidden tastes, for tests, benchmarks and the demo.

Each visitor follows one persona: a few favourite categories and, inside each category, a
persona-specific liking for some products over others (so collaborative filtering has
something to learn beyond popularity). Visitors browse in sessions: category pages,
product views, the odd search, carts, and purchases, spread over the last weeks.

Usage: ``sim = simulate(visitors=200, seed=1)``; ``sim.events`` are clean events ready for
``aigc_django.tracking.ingest.write_events`` and ``sim.truth[visitor]`` is the persona index.
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

DEFAULT_CATEGORIES = (
    "shoes",
    "outdoor",
    "kitchen",
    "books",
    "toys",
    "beauty",
    "electronics",
    "garden",
)


@dataclass(frozen=True)
class SimulatedItem:
    key: str
    category: str
    price: float


@dataclass(frozen=True)
class Persona:
    key: str
    # Probability of each category when this persona browses.
    category_weights: dict[str, float]
    # Per item, how much this persona likes it relative to others of its category.
    item_affinity: dict[str, float]
    sessions: float  # mean sessions per visitor
    purchase_rate: float  # chance that a session with a cart ends in a purchase


@dataclass
class Simulation:
    items: list[SimulatedItem]
    personas: list[Persona]
    events: list[dict[str, Any]]
    # visitor id (str) -> index of the visitor's persona
    truth: dict[str, int] = field(default_factory=dict)


def make_items(
    categories: tuple[str, ...], per_category: int, rng: random.Random
) -> list[SimulatedItem]:
    items = []
    for category in categories:
        base = rng.choice((9.0, 19.0, 29.0, 49.0, 89.0))
        for n in range(per_category):
            price = round(base * rng.uniform(0.5, 2.5), 2)
            items.append(SimulatedItem(f"{category[:3].upper()}-{n:04d}", category, price))
    return items


def make_personas(
    count: int, categories: tuple[str, ...], items: list[SimulatedItem], rng: random.Random
) -> list[Persona]:
    """Personas with distinct favourite categories (one or two each, ~80% of their time)."""
    personas = []
    for index in range(count):
        main = categories[index % len(categories)]
        second = categories[(index * 3 + 1) % len(categories)] if index >= len(categories) else None
        weights = {c: 0.2 / len(categories) for c in categories}
        if second and second != main:
            weights[main] += 0.5
            weights[second] += 0.3
        else:
            weights[main] += 0.8
        affinity = {item.key: rng.paretovariate(1.2) for item in items}
        personas.append(
            Persona(
                key=f"persona-{index}",
                category_weights=weights,
                item_affinity=affinity,
                sessions=rng.uniform(2.0, 5.0),
                purchase_rate=rng.uniform(0.2, 0.5),
            )
        )
    return personas


def simulate(
    visitors: int = 1000,
    personas: int = 5,
    categories: tuple[str, ...] = DEFAULT_CATEGORIES,
    items_per_category: int = 40,
    days: int = 30,
    seed: int = 0,
    now: datetime | None = None,
    items: list[SimulatedItem] | None = None,
) -> Simulation:
    """Visitors, their hidden personas and their clean events (oldest first per visitor).

    Pass ``items`` to browse a real catalog (their categories replace ``categories``);
    otherwise ``items_per_category`` items are made up for each category.
    """
    rng = random.Random(seed)
    now = now or datetime.now(UTC)
    if items:
        categories = tuple(dict.fromkeys(item.category for item in items))
    else:
        items = make_items(categories, items_per_category, rng)
    by_category: dict[str, list[SimulatedItem]] = {}
    for item in items:
        by_category.setdefault(item.category, []).append(item)
    people = make_personas(personas, categories, items, rng)
    simulation = Simulation(items=items, personas=people, events=[])
    category_names = list(categories)

    for _ in range(visitors):
        visitor = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        persona_index = rng.randrange(len(people))
        persona = people[persona_index]
        simulation.truth[visitor] = persona_index
        weights = [persona.category_weights[c] for c in category_names]
        sessions = max(1, round(rng.expovariate(1 / persona.sessions)))
        start = now - timedelta(days=rng.uniform(1, days))
        # Sessions end before ``now``: they last well under the hour left free.
        last_start = now - timedelta(hours=2)
        moments = sorted(start + (last_start - start) * rng.random() for _ in range(sessions))
        device = rng.choice(("mobile", "mobile", "desktop", "tablet"))
        for moment in moments:
            simulation.events += _session(
                visitor, persona, by_category, category_names, weights, moment, device, rng
            )
    return simulation


def _session(
    visitor: str,
    persona: Persona,
    by_category: dict[str, list[SimulatedItem]],
    category_names: list[str],
    weights: list[float],
    moment: datetime,
    device: str,
    rng: random.Random,
) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []

    def emit(kind: str, item: SimulatedItem | None = None, **extra: Any) -> None:
        nonlocal moment
        moment += timedelta(seconds=rng.uniform(5, 90))
        events.append(
            {
                "visitor": visitor,
                "kind": kind,
                "item": item.key if item else "",
                "category": extra.pop("category", item.category if item else ""),
                "value": extra.pop("value", None),
                "properties": {"device": device, **extra},
                "occurred_at": moment.isoformat(),
            }
        )

    emit("page_view", path="/")
    cart: list[SimulatedItem] = []
    for _ in range(rng.randint(1, 3)):
        category = rng.choices(category_names, weights)[0]
        if rng.random() < 0.15:
            emit("search", category=category, query=category)
        else:
            emit("category_view", category=category)
        shelf = by_category[category]
        liked = [persona.item_affinity[i.key] for i in shelf]
        for item in rng.choices(shelf, liked, k=rng.randint(1, 4)):
            emit("product_view", item)
            if rng.random() < 0.25:
                emit("add_to_cart", item, value=item.price)
                cart.append(item)
    if cart and rng.random() < persona.purchase_rate:
        emit("purchase", value=round(sum(i.price for i in cart), 2), items=[i.key for i in cart])
    return events
