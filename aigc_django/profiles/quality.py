"""Measures of how well profiles recover what is known about simulated visitors."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from math import comb
from typing import Any


def adjusted_rand_index(truth: Sequence[Any], found: Sequence[Any]) -> float:
    """Agreement of two labelings of the same items, 1.0 for identical partitions and about
    0.0 for random ones (Hubert and Arabie, 1985)."""
    if len(truth) != len(found):
        raise ValueError("both labelings must cover the same items")
    n = len(truth)
    if n < 2:
        return 1.0
    pairs = sum(comb(c, 2) for c in Counter(zip(truth, found, strict=True)).values())
    rows = sum(comb(c, 2) for c in Counter(truth).values())
    cols = sum(comb(c, 2) for c in Counter(found).values())
    expected = rows * cols / comb(n, 2)
    best = (rows + cols) / 2
    if best == expected:
        return 1.0
    return (pairs - expected) / (best - expected)
