"""Rule segments: conditions editors write, evaluated against all profiles at once.

A rule segment's ``rules`` is a list of conditions that must all hold::

    [{"type": "category_affinity", "category": "shoes", "min_share": 0.4},
     {"type": "device", "is": "mobile"}]

Precedence: a visitor matching several rule segments goes to the one with the highest
``priority`` (then the lowest key); any matching rule segment wins over the learned segment;
visitors in neither are in ``everyone``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import torch
from django.core.exceptions import ValidationError

from aigc_django.profiles.features import SECONDS_PER_DAY, VisitorFeatures

# type -> {parameter: (python type, required)}
CONDITIONS: dict[str, dict[str, tuple[type | tuple[type, ...], bool]]] = {
    "new_visitor": {"days": ((int, float), True)},
    "cart_abandoner": {"idle_hours": ((int, float), False)},
    "high_spender": {"min_spent": ((int, float), True)},
    "category_affinity": {"category": (str, True), "min_share": ((int, float), True)},
    "referrer": {"contains": (str, True)},
    "device": {"is": (str, True)},
}
DEVICES = ("mobile", "tablet", "desktop")


def validate_rules(rules: Any) -> None:
    """Raise ValidationError with one message per problem."""
    if not isinstance(rules, list) or not rules:
        raise ValidationError("Rules must be a non-empty list of conditions.")
    problems = []
    for index, condition in enumerate(rules):
        where = f"Condition {index + 1}"
        if not isinstance(condition, dict) or condition.get("type") not in CONDITIONS:
            problems.append(f"{where}: 'type' must be one of {', '.join(CONDITIONS)}.")
            continue
        spec = CONDITIONS[condition["type"]]
        for name in condition:
            if name != "type" and name not in spec:
                problems.append(f"{where}: unknown parameter {name!r}.")
        for name, (kind, required) in spec.items():
            if name not in condition:
                if required:
                    problems.append(f"{where}: {name!r} is required.")
                continue
            value = condition[name]
            if isinstance(value, bool) or not isinstance(value, kind):
                problems.append(f"{where}: {name!r} has the wrong type.")
            elif isinstance(value, int | float) and (value < 0 or not math.isfinite(value)):
                problems.append(f"{where}: {name!r} must be a number of at least 0.")
            elif isinstance(value, str) and not value.strip():
                problems.append(f"{where}: {name!r} must not be empty.")
        if condition["type"] == "device" and condition.get("is") not in DEVICES:
            problems.append(f"{where}: 'is' must be one of {', '.join(DEVICES)}.")
    if problems:
        raise ValidationError(problems)


def _mask(condition: dict[str, Any], features: VisitorFeatures, now: float) -> torch.Tensor:
    kind = condition["type"]
    n = len(features)
    if kind == "new_visitor":
        return features.first_seen >= now - condition["days"] * SECONDS_PER_DAY
    if kind == "cart_abandoner":
        idle = condition.get("idle_hours", 1) * 3600.0
        last = torch.nan_to_num(features.last_cart, nan=math.inf)
        return features.cart_open & (last <= now - idle)
    if kind == "high_spender":
        return features.monetary >= condition["min_spent"]
    if kind == "category_affinity":
        try:
            column = features.category_keys.index(condition["category"])
        except ValueError:
            return torch.zeros(n, dtype=torch.bool)
        return features.shares()[:, column] >= condition["min_share"]
    if kind == "referrer":
        needle = condition["contains"].lower()
        return torch.tensor([needle in r.lower() for r in features.referrer], dtype=torch.bool)
    if kind == "device":
        return torch.tensor([d == condition["is"] for d in features.device], dtype=torch.bool)
    raise ValueError(f"Unknown condition type {kind!r}")


def matches(
    rules: list[dict[str, Any]], features: VisitorFeatures, now: float | None = None
) -> torch.Tensor:
    """Bool mask of the visitors that satisfy every condition."""
    now = time.time() if now is None else now
    mask = torch.ones(len(features), dtype=torch.bool)
    for condition in rules:
        mask &= _mask(condition, features, now)
    return mask


def assign_rule_segments(
    segments: list[Any],
    features: VisitorFeatures,
    now: float | None = None,
    on_error: Callable[[Any, Exception], None] | None = None,
) -> torch.Tensor:
    """Index into ``segments`` of the winning rule segment per visitor, -1 when none.

    ``segments`` are rule segments; an invalid one is skipped (``on_error`` is told).
    """
    winner = torch.full((len(features),), -1, dtype=torch.int64)
    ordered = sorted(range(len(segments)), key=lambda i: (-segments[i].priority, segments[i].key))
    for index in reversed(ordered):  # highest precedence last, so it overwrites
        segment = segments[index]
        try:
            validate_rules(segment.rules)
            winner[matches(segment.rules, features, now)] = index
        except (ValidationError, ValueError) as exc:
            if on_error is not None:
                on_error(segment, exc)
    return winner
