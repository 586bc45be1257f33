"""Tiny server-side SVG charts for the admin: no JavaScript, no assets from a CDN.

Every function returns a complete, well-formed ``<svg>`` element as a safe string, with its
labels escaped, so a template can print it as it is. Sizes are in CSS pixels; the charts
scale down with their container (``viewBox`` plus ``max-width: 100%``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from xml.sax.saxutils import escape

from django.utils.safestring import SafeString, mark_safe

FONT = "font-family:system-ui,sans-serif;font-size:12px"
BAR_COLOR = "#417690"  # the admin's own blue
TRACK_COLOR = "#e8eef1"
TEXT_COLOR = "#333"
MUTED_COLOR = "#888"


def _text(value: object) -> str:
    """Text for an SVG element or attribute, escaped."""
    return escape(str(value), {'"': "&quot;"})


def _number(value: float) -> str:
    return f"{value:.1f}".rstrip("0").rstrip(".")


def _svg(width: float, height: float, body: list[str], title: str) -> SafeString:
    # Safe: every piece of text in body went through _text().
    return mark_safe(
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{_number(width)}" '
        f'height="{_number(height)}" viewBox="0 0 {_number(width)} {_number(height)}" '
        f'role="img" aria-label="{_text(title)}" style="max-width:100%;height:auto">'
        f"<title>{_text(title)}</title>{''.join(body)}</svg>"
    )


def horizontal_bars(
    rows: Sequence[tuple[str, float]],
    *,
    title: str,
    width: int = 420,
    label_width: int = 140,
    row_height: int = 20,
    value_format: str = "{:,.0f}",
    color: str = BAR_COLOR,
) -> SafeString:
    """One bar per (label, value), longest bar = largest value, the value printed after it.

    Negative values are drawn as zero. An empty ``rows`` gives a small "no data" picture.
    """
    if not rows:
        return _svg(width, row_height, [_label(0, row_height * 0.7, "no data", MUTED_COLOR)], title)
    value_width = 64
    bar_space = max(20, width - label_width - value_width)
    largest = max((max(0.0, float(v)) for _, v in rows), default=0.0) or 1.0
    body = []
    for index, (label, value) in enumerate(rows):
        top = index * row_height
        length = bar_space * max(0.0, float(value)) / largest
        middle = top + row_height * 0.7
        body.append(_label(label_width - 6, middle, _shorten(label, 22), TEXT_COLOR, "end"))
        body.append(
            f'<rect x="{label_width}" y="{_number(top + 3)}" width="{_number(bar_space)}" '
            f'height="{row_height - 6}" fill="{TRACK_COLOR}"/>'
            f'<rect x="{label_width}" y="{_number(top + 3)}" width="{_number(length)}" '
            f'height="{row_height - 6}" fill="{_text(color)}"><title>{_text(label)}: '
            f"{_text(value_format.format(value))}</title></rect>"
        )
        body.append(
            _label(label_width + length + 4, middle, value_format.format(value), TEXT_COLOR)
        )
    return _svg(width, row_height * len(rows), body, title)


@dataclass(frozen=True)
class Interval:
    """One row of an interval plot: a point estimate inside a [low, high] interval."""

    label: str
    low: float
    estimate: float
    high: float
    note: str = ""


def interval_plot(
    rows: Sequence[Interval],
    *,
    title: str,
    width: int = 560,
    label_width: int = 180,
    row_height: int = 22,
    upper: float | None = None,
) -> SafeString:
    """Intervals on a shared axis from 0 to ``upper`` (default: the largest high, rounded up).

    Each row draws a line from low to high with a dot at the estimate; the axis is labelled
    in percent, for click-through rates.
    """
    axis_height = 18
    if not rows:
        return _svg(width, row_height, [_label(0, row_height * 0.7, "no data", MUTED_COLOR)], title)
    top_value = upper if upper is not None else max(r.high for r in rows)
    top_value = _nice_ceiling(max(top_value, 1e-6))
    plot_width = max(40, width - label_width - 70)
    height = row_height * len(rows) + axis_height

    def x(value: float) -> float:
        return label_width + plot_width * min(max(value, 0.0), top_value) / top_value

    body = []
    for tick in range(5):
        value = top_value * tick / 4
        position = x(value)
        body.append(
            f'<line x1="{_number(position)}" y1="0" x2="{_number(position)}" '
            f'y2="{row_height * len(rows)}" stroke="{TRACK_COLOR}"/>'
        )
        body.append(_label(position, height - 4, f"{value * 100:.3g}%", MUTED_COLOR, "middle"))
    for index, row in enumerate(rows):
        middle = index * row_height + row_height / 2
        body.append(_label(label_width - 6, middle + 4, _shorten(row.label, 28), TEXT_COLOR, "end"))
        tip = (
            f"{row.label}: {row.estimate * 100:.2f}% "
            f"({row.low * 100:.2f}% to {row.high * 100:.2f}%) {row.note}"
        ).strip()
        body.append(
            f'<g><title>{_text(tip)}</title><line x1="{_number(x(row.low))}" '
            f'y1="{_number(middle)}" x2="{_number(x(row.high))}" y2="{_number(middle)}" '
            f'stroke="{BAR_COLOR}" stroke-width="3" stroke-linecap="round"/>'
            f'<circle cx="{_number(x(row.estimate))}" cy="{_number(middle)}" r="4" '
            f'fill="#fff" stroke="{BAR_COLOR}" stroke-width="2"/></g>'
        )
        if row.note:
            body.append(_label(label_width + plot_width + 8, middle + 4, row.note, MUTED_COLOR))
    return _svg(width, height, body, title)


def progress_bar(fraction: float, *, width: int = 100, height: int = 10) -> SafeString:
    """A bar filled to ``fraction`` (clamped to 0..1), with the percentage as its tooltip."""
    share = min(max(float(fraction or 0.0), 0.0), 1.0)
    return _svg(
        width,
        height,
        [
            f'<rect width="{width}" height="{height}" rx="2" fill="{TRACK_COLOR}"/>',
            f'<rect width="{_number(width * share)}" height="{height}" rx="2" fill="{BAR_COLOR}"/>',
        ],
        f"{share * 100:.0f}%",
    )


def _label(x: float, y: float, text: str, color: str, anchor: str = "start") -> str:
    return (
        f'<text x="{_number(x)}" y="{_number(y)}" fill="{color}" text-anchor="{anchor}" '
        f'style="{FONT}">{_text(text)}</text>'
    )


def _shorten(text: str, limit: int) -> str:
    text = str(text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _nice_ceiling(value: float) -> float:
    """The smallest of 1, 2, 2.5, 5 times a power of ten that is at least ``value``."""
    power = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        if step * power >= value - 1e-12:
            return min(step * power, 1.0) if value <= 1.0 else step * power
    return 10 * power
