"""The graphic metrics of PKU PosterLayout (Hsu et al., CVPR 2023), for banner layouts.

Definitions follow the benchmark's evaluation script (``eval.py`` of
PKU-ICST-MIPL/PosterLayout-CVPR2023); boxes are (left, top, right, bottom) as fractions of
the canvas, each with a class: :data:`TEXT`, :data:`LOGO`, :data:`UNDERLAY` (a decoration
that text sits on: here the call-to-action button under its label) and :data:`PRODUCT`
(the product images, which PosterLayout's canvases have in the background instead).

* **validity** (higher is better): the share of elements whose area inside the canvas is
  at least 0.1% of the canvas. The others are dropped before the other metrics.
* **overlap** (lower is better): per layout, the sum of the IoU of every pair of
  non-underlay elements divided by their number; the mean over layouts.
* **alignment** (lower is better): per layout, for each of six coordinates (left, top,
  centre x, centre y, right, bottom) the smallest difference between two elements,
  g(d) = -log10(1 - d) of the smallest of those six, times the number of elements (the
  script adds the same value once per element); the mean over layouts. One shared edge
  anywhere makes a layout's alignment 0, so :func:`element_alignment` is reported beside
  it: the mean over elements of g(smallest difference to any other element).
* **underlay** (higher is better): ``und_l``, per underlay the largest share of a
  non-underlay element's area inside it; ``und_s``, the share of underlays that wholly
  contain a non-underlay element (the script's containment test compares an edge with
  itself; this one tests all four edges). Means over layouts that have underlays.

DS-GAN on PKU PosterLayout reaches overlap 0.022 and alignment 0.0046.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

TEXT, LOGO, UNDERLAY, PRODUCT = 1, 2, 3, 4
MIN_AREA = 0.001

NormLTRB = tuple[float, float, float, float]
Element = tuple[int, NormLTRB]
LayoutElements = list[Element]


def elements_of(
    boxes: dict[str, Sequence[int]],
    size: tuple[int, int],
    cta_label: Sequence[int] | None = None,
) -> LayoutElements:
    """A composer layout's boxes (pixels) as classed, normalized elements.

    The call to action counts as an underlay (its button) with a text element on it (its
    label: ``cta_label``, or the button itself when not given).
    """
    width, height = size

    def norm(box: Sequence[int]) -> NormLTRB:
        return (box[0] / width, box[1] / height, box[2] / width, box[3] / height)

    found: LayoutElements = []
    for name in sorted(boxes):
        box = boxes[name]
        if name in ("headline", "body"):
            found.append((TEXT, norm(box)))
        elif name == "logo":
            found.append((LOGO, norm(box)))
        elif name == "cta":
            found.append((UNDERLAY, norm(box)))
            found.append((TEXT, norm(cta_label if cta_label is not None else box)))
        elif name.startswith("product_"):
            found.append((PRODUCT, norm(box)))
    return found


def _area_inside(box: NormLTRB) -> float:
    left, top = max(0.0, box[0]), max(0.0, box[1])
    right, bottom = min(1.0, box[2]), min(1.0, box[3])
    return abs((right - left) * (bottom - top))


def validity(layouts: Iterable[LayoutElements]) -> float:
    total = empty = 0
    for layout in layouts:
        for _, box in layout:
            total += 1
            empty += _area_inside(box) < MIN_AREA
    return 1.0 - empty / total if total else 0.0


def valid_only(layouts: Iterable[LayoutElements]) -> list[LayoutElements]:
    """The layouts without their invalid (too small) elements."""
    return [[(c, b) for c, b in layout if _area_inside(b) >= MIN_AREA] for layout in layouts]


def iou(a: NormLTRB, b: NormLTRB) -> float:
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    inter = w * h if w > 0 and h > 0 else 0.0
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def overlap(layouts: Sequence[LayoutElements]) -> float:
    score = 0.0
    for layout in layouts:
        boxes = [b for c, b in layout if c != UNDERLAY]
        n = len(boxes)
        if n:
            pairs = sum(iou(boxes[i], boxes[j]) for i in range(n) for j in range(i + 1, n))
            score += pairs / n
    return score / len(layouts) if layouts else 0.0


def _g(delta: float) -> float:
    return -math.log10(1.0 - min(delta, 0.999999))


def _coordinates(box: NormLTRB) -> tuple[float, ...]:
    return (box[0], box[1], (box[0] + box[2]) / 2, (box[1] + box[3]) / 2, box[2], box[3])


def alignment(layouts: Sequence[LayoutElements]) -> float:
    score = 0.0
    for layout in layouts:
        points = [_coordinates(b) for _, b in layout]
        n = len(points)
        if n <= 1:
            continue
        best = min(
            _g(min(abs(points[i][k] - points[j][k]) for i in range(n) for j in range(i + 1, n)))
            for k in range(6)
        )
        score += n * best
    return score / len(layouts) if layouts else 0.0


def element_alignment(layouts: Sequence[LayoutElements]) -> float:
    values = []
    for layout in layouts:
        points = [_coordinates(b) for _, b in layout]
        n = len(points)
        if n <= 1:
            continue
        per = [
            _g(min(abs(points[i][k] - points[j][k]) for j in range(n) if j != i for k in range(6)))
            for i in range(n)
        ]
        values.append(sum(per) / n)
    return sum(values) / len(values) if values else 0.0


def _inside_share(outer: NormLTRB, inner: NormLTRB) -> float:
    w = min(outer[2], inner[2]) - max(outer[0], inner[0])
    h = min(outer[3], inner[3]) - max(outer[1], inner[1])
    area = (inner[2] - inner[0]) * (inner[3] - inner[1])
    return (w * h) / area if w > 0 and h > 0 and area > 0 else 0.0


def _contains(outer: NormLTRB, inner: NormLTRB) -> bool:
    return (
        outer[0] <= inner[0]
        and outer[1] <= inner[1]
        and outer[2] >= inner[2]
        and outer[3] >= inner[3]
    )


def underlay(layouts: Sequence[LayoutElements]) -> tuple[float, float]:
    """(und_l, und_s); (0, 0) when no layout has an underlay."""
    loose, strict = [], []
    for layout in layouts:
        decorations = [b for c, b in layout if c == UNDERLAY]
        others = [b for c, b in layout if c != UNDERLAY]
        if not decorations:
            continue
        loose.append(
            sum(max((_inside_share(d, o) for o in others), default=0.0) for d in decorations)
            / len(decorations)
        )
        strict.append(
            sum(any(_contains(d, o) for o in others) for d in decorations) / len(decorations)
        )
    if not loose:
        return 0.0, 0.0
    return sum(loose) / len(loose), sum(strict) / len(strict)


def graphic_metrics(layouts: Sequence[LayoutElements]) -> dict[str, float]:
    """validity, overlap, alignment, element_alignment, underlay (und_l) and underlay_strict
    (und_s) of a set of layouts, as the PosterLayout script computes them."""
    kept = valid_only(layouts)
    und_l, und_s = underlay(kept)
    return {
        "validity": validity(layouts),
        "overlap": overlap(kept),
        "alignment": alignment(kept),
        "element_alignment": element_alignment(kept),
        "underlay": und_l,
        "underlay_strict": und_s,
    }
