"""Thompson sampling over click-through: which approved variant a request shows.

Each variant's click-through rate has a Beta(1 + clicks, 1 + impressions - clicks)
posterior (a uniform prior updated by its counts). One draw per variant, the highest draw
wins: a variant with few impressions has a wide posterior and still gets shown sometimes
(exploration), one that keeps winning gets shown more (exploitation).
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence

import numpy as np


def _beta_parameters(counts: tuple[int, int] | None) -> tuple[float, float]:
    """Posterior parameters for ``(impressions, clicks)``; bad counts are clamped."""
    impressions, clicks = counts if counts is not None else (0, 0)
    impressions = max(int(impressions), 0)
    clicks = min(max(int(clicks), 0), impressions)
    return 1.0 + clicks, 1.0 + impressions - clicks


def posterior_mean(impressions: int, clicks: int) -> float:
    """Posterior mean click-through under the uniform prior: (1 + clicks) / (2 + impressions)."""
    alpha, beta = _beta_parameters((impressions, clicks))
    return alpha / (alpha + beta)


def thompson_pick(
    variant_ids: list[int],
    counts: Mapping[int, tuple[int, int]],
    rng: random.Random,
) -> int:
    """Return the variant id with the highest draw from its click-through posterior.

    ``counts`` maps a variant id to ``(impressions, clicks)``; a missing id counts as no
    data. Clicks above impressions (a click whose impression is not flushed yet) are
    clamped. Ties go to the earlier id in ``variant_ids``. Raises ``ValueError`` for an
    empty list.
    """
    if not variant_ids:
        raise ValueError("thompson_pick needs at least one variant.")
    best_id = variant_ids[0]
    best_draw = -1.0
    for variant_id in variant_ids:
        alpha, beta = _beta_parameters(counts.get(variant_id))
        draw = rng.betavariate(alpha, beta)
        if draw > best_draw:
            best_id, best_draw = variant_id, draw
    return best_id


def thompson_pick_many(
    impressions: Sequence[int] | np.ndarray,
    clicks: Sequence[int] | np.ndarray,
    draws: int,
    generator: np.random.Generator,
) -> np.ndarray:
    """Vectorised Thompson sampling: ``draws`` picks at once, as indexes into the arms.

    Every pick draws from the same posteriors (the counts do not change between picks), as
    when many requests arrive between two counter flushes. Ties go to the lower index.
    """
    shown = np.maximum(np.asarray(impressions, dtype=np.float64), 0.0)
    clicked = np.clip(np.asarray(clicks, dtype=np.float64), 0.0, shown)
    samples = generator.beta(1.0 + clicked, 1.0 + shown - clicked, size=(draws, shown.size))
    return np.argmax(samples, axis=1)
