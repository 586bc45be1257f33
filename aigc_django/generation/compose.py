"""The banner composer (Pillow): background, products, headline, body, call to action, logo.

``compose_banner`` lays one banner out at any size and checks its own work:

* safe margins: every box lies inside ``margin(size)`` (5% of the shorter side, at least
  8 px) of the edges;
* layout by shape: wide, short strips (728x90) put logo, text, products and the button in one
  row; landscape banners (1200x628, 1920x600) put text left and products right; square and
  tall ones stack logo, text, products and the button;
* text fitted by a size search with word wrapping; when the copy does not fit at
  :data:`MIN_FONT_SIZE`, the body is dropped, then the product images, then the logo, and
  last the headline is cut with an ellipsis; nothing ever overflows its box;
* no box overlaps another (by construction, and re-checked in the report);
* WCAG AA contrast (4.5:1) measured between each text colour and the darkest or lightest
  pixel actually under its box; when neither dark nor light text reaches it, a
  semi-opaque scrim (as light as will do) goes behind the text block and the pixels are
  measured again; the call to action is a button in a brand colour, darkened or lightened
  until its label reaches 4.5:1.

``compose_many`` composes and encodes a batch over a pool of processes, with cached fonts,
layouts and resized product images: the fast path for a generation job.

Learned layouts: when a layout model is active (``aigc_train layout``, see
:mod:`aigc_django.generation.layouts`), ``choose_layout`` samples a few layouts from it for
the banner's size, content and segment (seeded by those, so the same banner always gets the
same layout), repairs each to the constraints above and takes the first that passes; the
fixed layout of ``plan`` is used when there is no model, the model cannot be loaded, or no
sample passes. The report says which (``layout_source``: "vae" or "fixed").
"""

from __future__ import annotations

import io
import logging
import multiprocessing
import os
from collections import OrderedDict
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont, ImageOps

from aigc_django.generation.images import Rendition, open_image, renditions

logger = logging.getLogger(__name__)

# The standard slot sizes (width, height); any other size works too.
SIZES: list[tuple[int, int]] = [
    (1920, 600),
    (1200, 628),
    (1080, 1080),
    (728, 90),
    (300, 250),
    (750, 1000),
]
# Smallest font size (pixels) the composer uses; copy that does not fit at it is dropped.
MIN_FONT_SIZE = 12
# WCAG AA for normal text, and the ratio the composer aims at (a little above, for safety).
AA_CONTRAST = 4.5
TARGET_CONTRAST = 4.6
# At most this many product images per banner.
MAX_PRODUCTS = 3
TEXT_FIELDS = ("headline", "body", "cta")
DEFAULT_COLORS = ["#1f2937", "#f59e0b", "#f3f4f6"]
DARK_TEXT = (17, 24, 39)
LIGHT_TEXT = (255, 255, 255)

Box = tuple[int, int, int, int]


# ---------------------------------------------------------------------------------------
# Colour


def parse_hex(value: str) -> tuple[int, int, int] | None:
    """``"#rrggbb"`` or ``"#rgb"`` as (r, g, b), or ``None``."""
    from aigc_django.generation.backends.builtin_image import parse_colour

    return parse_colour(value)


def to_hex(rgb: Iterable[int]) -> str:
    return "#" + "".join(f"{int(v):02x}" for v in rgb)


def _linear_table() -> np.ndarray:
    v = np.arange(256, dtype=np.float64) / 255.0
    return np.where(v <= 0.04045, v / 12.92, ((v + 0.055) / 1.055) ** 2.4)


LINEAR = _linear_table()
# Per-channel contributions to relative luminance, indexed by the 8-bit value.
LUM_R = (0.2126 * LINEAR).astype(np.float32)
LUM_G = (0.7152 * LINEAR).astype(np.float32)
LUM_B = (0.0722 * LINEAR).astype(np.float32)


def luminance(rgb: Iterable[int]) -> float:
    """WCAG relative luminance of an 8-bit sRGB colour."""
    r, g, b = (int(v) for v in rgb)
    return float(LUM_R[r]) + float(LUM_G[g]) + float(LUM_B[b])


def contrast_ratio(lum_a: float, lum_b: float) -> float:
    """WCAG contrast ratio of two relative luminances."""
    high, low = max(lum_a, lum_b), min(lum_a, lum_b)
    return (high + 0.05) / (low + 0.05)


def luminance_range(pixels: np.ndarray) -> tuple[float, float]:
    """(darkest, lightest) relative luminance among an (h, w, 3) uint8 array's pixels."""
    if pixels.size == 0:
        return 0.0, 1.0
    lum = LUM_R[pixels[..., 0]] + LUM_G[pixels[..., 1]] + LUM_B[pixels[..., 2]]
    return float(lum.min()), float(lum.max())


def worst_contrast(colour: tuple[int, int, int], low: float, high: float) -> float:
    """The lowest contrast of ``colour`` against any luminance in [low, high]."""
    lum = luminance(colour)
    if low <= lum <= high:
        return 1.0
    return contrast_ratio(lum, high) if lum > high else contrast_ratio(lum, low)


# ---------------------------------------------------------------------------------------
# Brand style and fonts


@dataclass
class BrandStyle:
    """Colours, fonts and logo of the brand, as banners use them."""

    colors: list[str] = field(default_factory=lambda: list(DEFAULT_COLORS))
    font: str | None = None
    bold_font: str | None = None
    logo: Image.Image | None = None

    @classmethod
    def from_settings(cls) -> BrandStyle:
        """The style ``AIGC["BRAND"]`` describes.

        A logo or font file that is missing or broken is logged and left out (the system
        check reports it); this never raises.
        """
        from aigc_django.conf import aigc_settings

        brand = aigc_settings.BRAND
        colors = [c for c in (brand.get("COLORS") or []) if parse_hex(c)] or list(DEFAULT_COLORS)
        fonts = []
        for key in ("FONT", "BOLD_FONT"):
            path = brand.get(key)
            if path and not _font_usable(str(path)):
                logger.warning("AIGC BRAND %s %r cannot be loaded; using the default.", key, path)
                path = None
            fonts.append(str(path) if path else None)
        logo = None
        if brand.get("LOGO"):
            logo = open_image(brand["LOGO"], max_side=1024)
            if logo is None:
                logger.warning(
                    "AIGC BRAND LOGO %r cannot be read; banners go without.", brand["LOGO"]
                )
        return cls(colors=colors, font=fonts[0], bold_font=fonts[1], logo=logo)

    def cache_key(self) -> tuple:
        logo = self.logo.size if self.logo is not None else None
        return (tuple(self.colors), self.font, self.bold_font, logo)


def _font_usable(path: str) -> bool:
    try:
        ImageFont.truetype(path, 12)
    except (OSError, ValueError):
        return False
    return True


@lru_cache(maxsize=1)
def _default_font_bytes() -> bytes:
    return ImageFont.load_default(size=12).font_bytes  # type: ignore[union-attr]


@lru_cache(maxsize=512)
def get_font(path: str | None, size: int) -> ImageFont.FreeTypeFont:
    """A font at ``size`` pixels: ``path`` or Pillow's bundled font (Aileron), cached."""
    if path:
        try:
            return ImageFont.truetype(path, size)
        except (OSError, ValueError):
            logger.warning("Font %r cannot be loaded; using the default.", path)
    return ImageFont.truetype(io.BytesIO(_default_font_bytes()), size)


# ---------------------------------------------------------------------------------------
# Text fitting


@dataclass(frozen=True)
class TextBlock:
    """Wrapped lines at one size, with the block's exact ink size."""

    lines: tuple[str, ...]
    size: int
    bold: bool
    stroke: int
    step: int
    # Offset of the ink's top-left corner from the drawing origin of the first line.
    left: int
    top: int
    width: int
    height: int


def _font_for(fonts: tuple[str | None, str | None], size: int, bold: bool):
    regular, bold_path = fonts
    if bold and bold_path:
        return get_font(bold_path, size), 0
    # Without a bold face, headlines are emboldened with a thin stroke of their own colour.
    stroke = max(1, round(size / 30)) if bold and size >= 20 else 0
    return get_font(regular, size), stroke


def _wrap(
    words: list[str], font, stroke: int, max_width: int, max_lines: int, ellipsis: bool
) -> list[str] | None:
    """Greedy word wrap; ``None`` when the words need more lines or a word is too wide."""

    def width(text: str) -> float:
        return font.getlength(text) + 2 * stroke

    lines: list[str] = []
    current = ""
    for index, word in enumerate(words):
        candidate = f"{current} {word}" if current else word
        if width(candidate) <= max_width:
            current = candidate
            continue
        if current:
            lines.append(current)
        current = word
        if len(lines) >= max_lines or width(word) > max_width:
            if not ellipsis:
                return None
            if len(lines) >= max_lines:
                last = lines.pop() if lines else ""
                rest = " ".join(words[index:])
                lines.append(_ellipsize(f"{last} {rest}".strip(), width, max_width))
                return lines
            lines.append(_ellipsize(" ".join(words[index:]), width, max_width))
            return lines[:max_lines]
    if current:
        lines.append(current)
    return lines if len(lines) <= max_lines else None


def _ellipsize(text: str, width, max_width: int) -> str:
    """The longest start of ``text`` that fits with a trailing ellipsis."""
    low, high = 0, len(text)
    while low < high:
        mid = (low + high + 1) // 2
        if width(text[:mid].rstrip() + "…") <= max_width:
            low = mid
        else:
            high = mid - 1
    return (text[:low].rstrip() + "…") if low else ""


def measure(
    text: str,
    fonts: tuple[str | None, str | None],
    size: int,
    bold: bool,
    max_width: int,
    max_lines: int,
    ellipsis: bool = False,
) -> TextBlock | None:
    """``text`` wrapped into ``max_width`` at ``size``, or ``None`` when it does not fit."""
    words = text.split()
    if not words or max_width <= 0 or max_lines <= 0:
        return None
    font, stroke = _font_for(fonts, size, bold)
    lines = _wrap(words, font, stroke, max_width, max_lines, ellipsis)
    if not lines or not all(lines):
        return None
    ascent, descent = font.getmetrics()
    step = round((ascent + descent) * 1.08) + 2 * stroke
    left = top = 10**9
    right = bottom = -(10**9)
    for i, line in enumerate(lines):
        x0, y0, x1, y1 = font.getbbox(line, anchor="la", stroke_width=stroke)
        left, top = min(left, x0), min(top, y0 + i * step)
        right, bottom = max(right, x1), max(bottom, y1 + i * step)
    # One pixel of slack on each side holds anti-aliasing.
    width, height = right - left + 2, bottom - top + 2
    if width > max_width:
        return None
    return TextBlock(tuple(lines), size, bold, stroke, step, left - 1, top - 1, width, height)


def fit_text(
    text: str,
    fonts: tuple[str | None, str | None],
    max_width: int,
    max_height: int,
    low: int,
    high: int,
    bold: bool = False,
    max_lines: int = 3,
) -> TextBlock | None:
    """The largest size in [low, high] at which ``text`` fits the box (binary search)."""
    best = None
    while low <= high:
        mid = (low + high) // 2
        block = measure(text, fonts, mid, bold, max_width, max_lines)
        if block is not None and block.height <= max_height:
            best, low = block, mid + 1
        else:
            high = mid - 1
    return best


def _fit_copy(
    headline: str,
    body: str,
    fonts: tuple[str | None, str | None],
    max_width: int,
    max_height: int,
    high: int,
    ellipsis: bool,
    lines: tuple[int, int] = (3, 4),
) -> tuple[TextBlock | None, TextBlock | None, int] | None:
    """Headline and body (body at about half the headline's size) fitted together,
    at most ``lines`` lines each.

    Returns (headline block, body block, gap between them) or ``None``.
    """
    if max_width < MIN_FONT_SIZE or max_height < MIN_FONT_SIZE:
        return None

    def attempt(size: int) -> tuple[TextBlock | None, TextBlock | None, int] | None:
        head = measure(headline, fonts, size, True, max_width, lines[0]) if headline else None
        if headline and head is None:
            return None
        body_block, gap = None, 0
        if body:
            body_size = max(MIN_FONT_SIZE, round(size * 0.5))
            body_block = measure(body, fonts, body_size, False, max_width, lines[1])
            if body_block is None:
                return None
            gap = max(4, round(size * 0.3)) if head else 0
        total = (head.height if head else 0) + gap + (body_block.height if body_block else 0)
        return (head, body_block, gap) if total <= max_height else None

    best = None
    low, high = MIN_FONT_SIZE, max(MIN_FONT_SIZE, high)
    while low <= high:
        mid = (low + high) // 2
        found = attempt(mid)
        if found is not None:
            best, low = found, mid + 1
        else:
            high = mid - 1
    if best is None and ellipsis and headline and not body:
        # Last resort: the headline at the smallest size, as many lines as the height
        # allows, cut with an ellipsis.
        font, stroke = _font_for(fonts, MIN_FONT_SIZE, True)
        ascent, descent = font.getmetrics()
        lines = max(1, (max_height + 2) // (round((ascent + descent) * 1.08) + 2 * stroke))
        head = measure(headline, fonts, MIN_FONT_SIZE, True, max_width, lines, ellipsis=True)
        if head is not None and head.height <= max_height:
            best = (head, None, 0)
    return best


# ---------------------------------------------------------------------------------------
# Layout


def margin(size: tuple[int, int]) -> int:
    """The safe margin of a banner: 5% of the shorter side, at least 8 px."""
    return max(8, round(0.05 * min(size)))


@dataclass
class Layout:
    """Where everything goes on one banner (no pixels)."""

    mode: str
    margin: int
    gap: int
    boxes: dict[str, Box]
    blocks: dict[str, TextBlock]
    # The CTA label's block and its drawing box inside the button.
    cta_label: Box | None
    # Product index per product box name.
    products: dict[str, int]
    dropped: list[str]
    truncated: list[str]


def _contain(item: tuple[int, int], cell: Box, align: str = "center") -> Box | None:
    """The largest box with ``item``'s aspect ratio inside ``cell``, centred."""
    x0, y0, x1, y1 = cell
    cw, ch = x1 - x0, y1 - y0
    iw, ih = item
    if cw <= 0 or ch <= 0 or iw <= 0 or ih <= 0:
        return None
    scale = min(cw / iw, ch / ih)
    w, h = max(1, int(iw * scale)), max(1, int(ih * scale))
    left = x0 + (cw - w) // 2 if align == "center" else (x0 if align == "left" else x1 - w)
    top = y0 + (ch - h) // 2
    return (left, top, left + w, top + h)


def _place_products(
    sizes: list[tuple[int, int]], region: Box, gap: int, min_side: int
) -> dict[str, Box] | None:
    """Products side by side or one above another in ``region``, whichever shows them
    larger; ``None`` when either way one of them would be under ``min_side``."""
    x0, y0, x1, y1 = region
    rw, rh = x1 - x0, y1 - y0
    n = len(sizes)
    if n == 0 or rw < min_side or rh < min_side:
        return None
    best, best_area = None, 0
    for horizontal in (True, False) if n > 1 else (True,):
        boxes = {}
        for i, item in enumerate(sizes):
            if horizontal:
                cw = (rw - gap * (n - 1)) // n
                cell = (x0 + i * (cw + gap), y0, x0 + i * (cw + gap) + cw, y1)
            else:
                ch = (rh - gap * (n - 1)) // n
                cell = (x0, y0 + i * (ch + gap), x1, y0 + i * (ch + gap) + ch)
            box = _contain(item, cell)
            if box is None or min(box[2] - box[0], box[3] - box[1]) < min_side:
                break
            boxes[f"product_{i}"] = box
        else:
            area = min((b[2] - b[0]) * (b[3] - b[1]) for b in boxes.values())
            if area > best_area:
                best, best_area = boxes, area
    return best


def _cta_button(
    text: str, fonts: tuple[str | None, str | None], size: int, max_width: int, max_height: int
) -> tuple[TextBlock, int, int] | None:
    """The CTA label fitted on one line, with its button's padding (x, y)."""
    for s in range(size, MIN_FONT_SIZE - 1, -1):
        block = measure(text, fonts, s, True, max_width, 1)
        if block is None:
            continue
        pad_x, pad_y = max(6, round(s * 0.8)), max(3, round(s * 0.4))
        if block.width + 2 * pad_x <= max_width and block.height + 2 * pad_y <= max_height:
            return block, pad_x, pad_y
    return None


def plan(
    size: tuple[int, int],
    copy: tuple[tuple[str, str], ...],
    product_sizes: tuple[tuple[int, int], ...],
    logo_size: tuple[int, int] | None,
    fonts: tuple[str | None, str | None],
) -> Layout:
    """Lay a banner out (cached: the same inputs always give the same layout)."""
    return _plan_cached(size, copy, product_sizes, logo_size, fonts)


@lru_cache(maxsize=2048)
def _plan_cached(size, copy, product_sizes, logo_size, fonts) -> Layout:
    texts = dict(copy)
    headline = " ".join(texts.get("headline", "").split())
    body = " ".join(texts.get("body", "").split())
    cta = " ".join(texts.get("cta", "").split())
    width, height = size
    m = margin(size)
    gap = max(4, round(m * 0.6))
    area = (m, m, width - m, height - m)
    if area[2] - area[0] < MIN_FONT_SIZE or area[3] - area[1] < MIN_FONT_SIZE:
        dropped = [f for f in ("headline", "body", "cta") if texts.get(f)]
        dropped += ["products"] * bool(product_sizes) + ["logo"] * bool(logo_size)
        return Layout("none", m, gap, {}, {}, None, {}, dropped, [])
    aspect = width / height
    mode = "strip" if height < 160 and aspect >= 3 else ("row" if aspect >= 1.4 else "stack")
    products = list(product_sizes[:MAX_PRODUCTS])
    # Preference order: everything; no body; no body and no products; no logo either; the
    # headline cut with an ellipsis.
    options = [
        (True, True, True, False),
        (False, True, True, False),
        (False, False, True, False),
        (False, False, False, False),
        (False, False, False, True),
    ]
    seen = set()
    for use_body, use_products, use_logo, ellipsis in options:
        use_body = use_body and bool(body)
        use_products = use_products and bool(products)
        use_logo = use_logo and logo_size is not None
        key = (use_body, use_products, use_logo, ellipsis)
        if key in seen:
            continue
        seen.add(key)
        layout = _try_layout(
            mode,
            size,
            area,
            m,
            gap,
            headline,
            body if use_body else "",
            cta,
            products if use_products else [],
            logo_size if use_logo else None,
            fonts,
            ellipsis,
        )
        if layout is not None:
            layout.dropped = [name for name, text in (("body", body),) if text and not use_body]
            layout.dropped += ["products"] * (bool(products) and not use_products)
            layout.dropped += ["logo"] * (logo_size is not None and not use_logo)
            if cta and "cta" not in layout.boxes:
                layout.dropped.append("cta")
            if ellipsis:
                layout.truncated.append("headline")
            return layout
    dropped = [f for f in ("headline", "body", "cta") if texts.get(f)]
    dropped += ["products"] * bool(products) + ["logo"] * (logo_size is not None)
    return Layout(mode, m, gap, {}, {}, None, {}, dropped, [])


def _try_layout(
    mode: str,
    size: tuple[int, int],
    area: Box,
    m: int,
    gap: int,
    headline: str,
    body: str,
    cta: str,
    products: list[tuple[int, int]],
    logo_size: tuple[int, int] | None,
    fonts: tuple[str | None, str | None],
    ellipsis: bool,
) -> Layout | None:
    left, top, right, bottom = area
    aw, ah = right - left, bottom - top
    boxes: dict[str, Box] = {}
    blocks: dict[str, TextBlock] = {}
    cta_label = None
    min_product = max(24, round(min(size) * 0.08))

    def add_text(x: int, y: int, fitted: tuple) -> int:
        head, body_block, between = fitted
        if head is not None:
            boxes["headline"] = (x, y, x + head.width, y + head.height)
            blocks["headline"] = head
            y += head.height + between
        if body_block is not None:
            boxes["body"] = (x, y, x + body_block.width, y + body_block.height)
            blocks["body"] = body_block
            y += body_block.height
        return y

    def text_height(fitted: tuple) -> int:
        head, body_block, between = fitted
        return (head.height if head else 0) + between + (body_block.height if body_block else 0)

    if mode == "strip":
        x0, x1 = left, right
        if logo_size:
            lw = min(round(ah * logo_size[0] / logo_size[1]), round(aw * 0.18))
            logo = _contain(logo_size, (x0, top, x0 + lw, bottom), "left")
            if logo is None:
                return None
            boxes["logo"] = logo
            x0 = logo[2] + gap
        if cta:
            button = _cta_button(cta, fonts, max(MIN_FONT_SIZE, round(ah * 0.3)), aw // 4, ah)
            if button is not None:
                label, px, py = button
                bw, bh = label.width + 2 * px, label.height + 2 * py
                by = top + (ah - bh) // 2
                boxes["cta"] = (x1 - bw, by, x1, by + bh)
                blocks["cta"] = label
                cta_label = (x1 - bw + px, by + py, x1 - px, by + py + label.height)
                x1 = x1 - bw - gap
        if products:
            room = round(aw * 0.3)
            used = 0
            placed = {}
            for i, item in enumerate(products):
                pw = min(round(ah * item[0] / item[1]), round(ah * 1.6), room - used)
                box = _contain(item, (x1 - used - pw, top, x1 - used, bottom))
                if box is None or min(box[2] - box[0], box[3] - box[1]) < min(min_product, ah):
                    return None
                placed[f"product_{i}"] = box
                used += pw + gap
            # Right-align the group tightly.
            boxes.update(placed)
            x1 = min(b[0] for b in placed.values()) - gap
        fitted = _fit_copy(
            headline, body, fonts, x1 - x0, ah, round(ah * 0.45), ellipsis, lines=(2, 1)
        )
        if fitted is None or x1 - x0 < 40:
            return None
        add_text(x0, top + (ah - text_height(fitted)) // 2, fitted)
        return Layout(mode, m, gap, boxes, blocks, cta_label, _indices(boxes), [], [])

    # "row" and "stack": the logo at the top left.
    y0 = top
    if logo_size:
        lh = min(max(14, round(ah * (0.1 if mode == "row" else 0.08))), 96)
        lw = min(round(lh * logo_size[0] / logo_size[1]), round(aw * 0.35))
        logo = _contain(logo_size, (left, top, left + lw, top + lh), "left")
        if logo is None:
            return None
        boxes["logo"] = logo
        y0 = logo[3] + gap
    if mode == "row":
        text_right = right
        if products:
            pw = round(aw * 0.42)
            text_right = right - pw - gap
            placed = _place_products(products, (right - pw, top, right, bottom), gap, min_product)
            if placed is None:
                return None
            boxes.update(placed)
        column_w, column_h = text_right - left, bottom - y0
        cta_size = max(MIN_FONT_SIZE, min(40, round(ah * 0.05)))
        head_max = max(MIN_FONT_SIZE, round(min(ah, aw * 0.6) * 0.12))
    else:
        column_w, column_h = aw, bottom - y0
        cta_size = max(MIN_FONT_SIZE, min(40, round(min(aw, ah) * 0.045)))
        head_max = max(MIN_FONT_SIZE, round(min(ah, aw * 0.6) * 0.12))
    button_h = 0
    if cta:
        button = _cta_button(cta, fonts, cta_size, column_w, max(0, column_h // 4))
        if button is not None:
            label, px, py = button
            button_h = label.height + 2 * py
            blocks["cta"] = label
            button_w = label.width + 2 * px
    space = column_h - (button_h + gap if button_h else 0)
    text_space = round(space * 0.5) if mode == "stack" and products else space
    fitted = _fit_copy(headline, body, fonts, column_w, text_space, head_max, ellipsis)
    if fitted is None:
        return None
    th = text_height(fitted)
    if mode == "row":
        # The text group (headline, body, button) centred in the column below the logo.
        group = th + (gap * 2 + button_h if button_h else 0)
        y = y0 + max(0, (column_h - group) // 2)
        y = add_text(left, y, fitted)
        if button_h:
            by = y + gap * 2
            boxes["cta"] = (left, by, left + button_w, by + button_h)
    else:
        y = add_text(left, y0, fitted)
        if button_h:
            by = bottom - button_h
            boxes["cta"] = (left, by, left + button_w, by + button_h)
        if products:
            region = (left, y + gap, right, (by - gap) if button_h else bottom)
            placed = _place_products(products, region, gap, min_product)
            if placed is None:
                return None
            boxes.update(placed)
    if button_h:
        bx, by = boxes["cta"][:2]
        label = blocks["cta"]
        cta_label = (bx + px, by + py, bx + px + label.width, by + py + label.height)
    return Layout(mode, m, gap, boxes, blocks, cta_label, _indices(boxes), [], [])


def _indices(boxes: dict[str, Box]) -> dict[str, int]:
    return {name: int(name.split("_")[1]) for name in boxes if name.startswith("product_")}


@dataclass(frozen=True)
class LayoutProposals:
    """Layouts sampled for one banner by the layout model (normalized boxes), for
    ``compose_banner`` to repair; ``compose_many`` samples a whole batch at once."""

    model: int
    seed: int
    boxes: tuple[dict, ...]


@dataclass
class LayoutChoice:
    """The layout a banner uses and where it came from."""

    layout: Layout
    source: str
    model: int | None = None
    seed: int | None = None
    content: dict[str, Any] = field(default_factory=dict)
    note: str = ""


def _condition(size, copy: dict[str, str], products: int, logo: bool, segment: str | None):
    from aigc_django.generation.layouts.encoding import Condition

    return Condition.of(size, copy, products, logo, segment)


def propose_layouts(
    items: list[tuple[tuple[int, int], dict[str, str], int, bool, str | None, int | None]],
) -> list[LayoutProposals | None]:
    """Sample layouts for many banners in one model call: (size, copy, number of products,
    has logo, segment key, seed or None) each. ``None`` entries when no model is active."""
    from aigc_django.generation.layouts import runtime

    sampler = runtime.active_sampler() if items else None
    if sampler is None:
        return [None] * len(items)
    try:
        conditions, seeds = [], []
        for size, copy, products, logo, segment, seed in items:
            condition = _condition(size, copy, products, logo, segment)
            conditions.append(condition)
            seeds.append(runtime.banner_seed(condition, copy) if seed is None else int(seed))
        sampled = sampler.propose(conditions, seeds, _candidates())
    except Exception:  # a model that misbehaves never stops a banner
        logger.exception("The layout model v%s failed to sample", sampler.version)
        return [None] * len(items)
    return [
        LayoutProposals(sampler.version, seed, tuple(found))
        for seed, found in zip(seeds, sampled, strict=True)
    ]


def _candidates() -> int:
    from aigc_django.conf import DEFAULTS, aigc_settings

    try:
        return int(aigc_settings.LAYOUT["CANDIDATES"])
    except Exception:
        return int(DEFAULTS["LAYOUT"]["CANDIDATES"])


def choose_layout(
    size: tuple[int, int],
    copy: tuple[tuple[str, str], ...],
    product_sizes: tuple[tuple[int, int], ...],
    logo_size: tuple[int, int] | None,
    fonts: tuple[str | None, str | None],
    segment: str | None = None,
    seed: int | None = None,
    proposals: LayoutProposals | None = None,
    use_model: bool = True,
) -> LayoutChoice:
    """The layout of a banner: a repaired sample of the active layout model when there is
    one and a sample passes, else the fixed layout of :func:`plan`.

    ``proposals`` are samples made beforehand (``propose_layouts``); without them and with
    ``use_model`` the active model (if any) is asked here.
    """
    reference = plan(size, copy, product_sizes, logo_size, fonts)
    texts = dict(copy)
    products = min(MAX_PRODUCTS, len(product_sizes))
    content = _condition(size, texts, products, logo_size is not None, segment).as_dict()
    if not reference.boxes:
        return LayoutChoice(reference, "fixed", content=content)
    if proposals is None and use_model:
        proposals = propose_layouts(
            [(size, texts, products, logo_size is not None, segment, seed)]
        )[0]
    if proposals is None:
        from aigc_django.generation.layouts import runtime

        errors = runtime.status()["errors"] if use_model else {}
        note = "the layout model cannot be loaded" if errors else ""
        return LayoutChoice(reference, "fixed", content=content, note=note)
    from aigc_django.generation.layouts.metrics import alignment, element_alignment, elements_of
    from aigc_django.generation.layouts.repair import repair

    def misalignment(layout: Layout) -> tuple[float, float]:
        """PosterLayout's alignment, then the per-element one (lower is better)."""
        found = [elements_of(layout.boxes, size, layout.cta_label)]
        return alignment(found), element_alignment(found)

    # The first repaired sample at least as well aligned as the fixed layout (on both
    # measures), else the best aligned of those that repair.
    goal = misalignment(reference)
    best: tuple[tuple[float, float], Layout] | None = None
    for boxes in proposals.boxes:
        try:
            layout = repair(
                boxes, size, texts, list(product_sizes[:MAX_PRODUCTS]), logo_size, fonts, reference
            )
        except Exception:  # a bad sample is only a rejected sample
            logger.exception("Repairing a sampled layout failed")
            layout = None
        if layout is None:
            continue
        score = misalignment(layout)
        if best is None or score < best[0]:
            best = (score, layout)
        if score[0] <= goal[0] and score[1] <= goal[1]:
            break
    if best is not None:
        return LayoutChoice(best[1], "vae", proposals.model, proposals.seed, content)
    return LayoutChoice(
        reference,
        "fixed",
        proposals.model,
        proposals.seed,
        content,
        note="no sampled layout could be repaired",
    )


# ---------------------------------------------------------------------------------------
# Rendering


@dataclass
class Banner:
    """A composed banner, where each element went, and the composer's own checks."""

    image: Image.Image
    boxes: dict[str, Box]
    report: dict[str, Any]
    # The banner before any text was drawn (background, scrim, products, logo, button);
    # kept only when asked for, to let tests measure contrast on the real pixels.
    backdrop: Image.Image | None = None
    # Where the layout came from and what it held (Variant.layout stores it per size).
    record: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """No overlaps, no contrast failures, nothing outside the safe margins."""
        report = self.report
        return not (report["overlaps"] or report["contrast_failures"] or report["outside_margin"])


def _cover(background: Image.Image, size: tuple[int, int]) -> Image.Image:
    """The background cropped and scaled to fill ``size`` exactly (a new RGB image)."""
    if background.mode != "RGB":
        background = background.convert("RGB")
        if background.size == size:
            return background
    if background.size == size:
        return background.copy()
    return ImageOps.fit(background, size, Image.Resampling.BILINEAR)


class _ResizeCache:
    """Resized product images by (source id, size), for one batch of banners."""

    def __init__(self, limit: int = 256) -> None:
        self.items: OrderedDict[tuple[int, tuple[int, int]], tuple[Image.Image, Image.Image]] = (
            OrderedDict()
        )
        self.limit = limit

    def get(self, image: Image.Image, size: tuple[int, int]) -> Image.Image:
        key = (id(image), size)
        hit = self.items.get(key)
        if hit is not None and hit[0] is image:
            self.items.move_to_end(key)
            return hit[1]
        resized = _resize(image, size)
        # The source is kept with the result so its id cannot be reused meanwhile.
        self.items[key] = (image, resized)
        if len(self.items) > self.limit:
            self.items.popitem(last=False)
        return resized


def _resize(image: Image.Image, size: tuple[int, int]) -> Image.Image:
    if image.size == size:
        return image
    return image.resize(size, Image.Resampling.LANCZOS, reducing_gap=2.0)


def compose_banner(
    background: Image.Image,
    size: tuple[int, int],
    copy: dict[str, str],
    products: list[Image.Image],
    style: BrandStyle,
    keep_backdrop: bool = False,
    _resized: _ResizeCache | None = None,
    *,
    segment: str | None = None,
    seed: int | None = None,
    proposals: LayoutProposals | None = None,
    use_model: bool = True,
) -> Banner:
    """Compose one banner of ``size`` (width, height); see the module docstring.

    ``segment`` (a segment key) and ``seed`` condition the layout model's samples (the seed
    defaults to one derived from the size, copy and segment); ``use_model=False`` keeps the
    fixed layouts.
    """
    size = (int(size[0]), int(size[1]))
    products = [p for p in products if p is not None][:MAX_PRODUCTS]
    fonts = (style.font, style.bold_font)
    copy_key = tuple(
        (name, str(copy.get(name) or "")) for name in TEXT_FIELDS if (copy.get(name) or "")
    )
    logo = style.logo
    choice = choose_layout(
        size,
        copy_key,
        tuple(p.size for p in products),
        logo.size if logo is not None else None,
        fonts,
        segment=segment,
        seed=seed,
        proposals=proposals,
        use_model=use_model,
    )
    layout = choice.layout
    canvas = _cover(background, size)
    pixels = np.asarray(canvas)
    colours: dict[str, tuple[int, int, int]] = {}
    measured: dict[str, float] = {}
    text_boxes = {name: layout.boxes[name] for name in ("headline", "body") if name in layout.boxes}
    scrim: dict[str, Any] | None = None
    for name, box in text_boxes.items():
        colours[name], measured[name] = _text_colour(pixels, box, style.colors)
    if any(value < TARGET_CONTRAST for value in measured.values()):
        scrim = _apply_scrim(canvas, text_boxes, layout.gap, size)
        pixels = np.asarray(canvas)
        for name, box in text_boxes.items():
            colours[name], measured[name] = _text_colour(pixels, box, style.colors)
    resize = _resized.get if _resized is not None else _resize
    for name, index in layout.products.items():
        box = layout.boxes[name]
        picture = resize(products[index], (box[2] - box[0], box[3] - box[1]))
        _paste(canvas, picture, box)
    if logo is not None and "logo" in layout.boxes:
        box = layout.boxes["logo"]
        _paste(canvas, resize(logo, (box[2] - box[0], box[3] - box[1])), box)
    draw = ImageDraw.Draw(canvas)
    button = None
    if "cta" in layout.boxes and layout.cta_label is not None:
        button, label_colour = _button_colours(style.colors)
        box = layout.boxes["cta"]
        radius = min(8, (box[3] - box[1]) // 4)
        draw.rounded_rectangle((box[0], box[1], box[2] - 1, box[3] - 1), radius, fill=button)
        colours["cta"] = label_colour
        measured["cta"] = contrast_ratio(luminance(button), luminance(label_colour))
    backdrop = canvas.copy() if keep_backdrop else None
    for name in ("headline", "body"):
        if name in layout.blocks and name in layout.boxes:
            _draw_block(draw, layout.blocks[name], layout.boxes[name], colours[name], fonts)
    if button is not None and layout.cta_label is not None:
        _draw_block(draw, layout.blocks["cta"], layout.cta_label, colours["cta"], fonts)
    boxes = dict(layout.boxes)
    report = {
        "mode": layout.mode,
        "margin": layout.margin,
        "overlaps": overlaps(boxes),
        "contrast": {name: _floor2(value) for name, value in measured.items()},
        "contrast_failures": sorted(n for n, v in measured.items() if v < AA_CONTRAST),
        "outside_margin": outside_margin(boxes, size, layout.margin),
        "scrim": scrim is not None,
        "scrim_alpha": scrim["alpha"] if scrim else 0.0,
        "colors": {name: to_hex(value) for name, value in colours.items()},
        "button_color": to_hex(button) if button is not None else None,
        "font_sizes": {name: block.size for name, block in layout.blocks.items()},
        "dropped": list(layout.dropped),
        "truncated": list(layout.truncated),
        "layout_source": choice.source,
        "layout_model": choice.model if choice.source == "vae" else None,
    }
    if choice.note:
        report["layout_note"] = choice.note
    record = {
        "size": [size[0], size[1]],
        "boxes": {name: list(box) for name, box in boxes.items()},
        "source": choice.source,
        "model": choice.model if choice.source == "vae" else None,
        "seed": choice.seed,
        "content": choice.content,
    }
    return Banner(canvas, boxes, report, backdrop, record)


def _floor2(value: float) -> float:
    return int(value * 100) / 100


def _paste(canvas: Image.Image, picture: Image.Image, box: Box) -> None:
    if picture.mode == "RGBA":
        canvas.paste(picture, box[:2], picture)
    else:
        canvas.paste(picture.convert("RGB") if picture.mode != "RGB" else picture, box[:2])


def _draw_block(
    draw: ImageDraw.ImageDraw,
    block: TextBlock,
    box: Box,
    colour: tuple[int, int, int],
    fonts: tuple[str | None, str | None],
) -> None:
    font, stroke = _font_for(fonts, block.size, block.bold)
    x, y = box[0] - block.left, box[1] - block.top
    for i, line in enumerate(block.lines):
        draw.text(
            (x, y + i * block.step),
            line,
            fill=colour,
            font=font,
            anchor="la",
            stroke_width=stroke,
            stroke_fill=colour if stroke else None,
        )


def _text_candidates(colors: list[str]) -> list[tuple[int, int, int]]:
    """Text colours to try: the brand's darkest colour when it is dark enough, near-black
    and white."""
    parsed = [c for c in (parse_hex(v) for v in colors) if c]
    candidates = []
    dark = [c for c in parsed if luminance(c) <= 0.05]
    if dark:
        candidates.append(min(dark, key=luminance))
    candidates += [DARK_TEXT, LIGHT_TEXT]
    return candidates


def _text_colour(
    pixels: np.ndarray, box: Box, colors: list[str]
) -> tuple[tuple[int, int, int], float]:
    """The text colour with the best worst-case contrast over the pixels under ``box``."""
    low, high = luminance_range(pixels[box[1] : box[3], box[0] : box[2]])
    best, best_ratio = LIGHT_TEXT, 0.0
    for colour in _text_candidates(colors):
        ratio = worst_contrast(colour, low, high)
        if ratio >= TARGET_CONTRAST:
            return colour, ratio
        if ratio > best_ratio:
            best, best_ratio = colour, ratio
    return best, best_ratio


def _apply_scrim(
    canvas: Image.Image, boxes: dict[str, Box], gap: int, size: tuple[int, int]
) -> dict[str, Any]:
    """Darken or lighten the region behind the text block just enough for 4.5:1.

    Tries a dark scrim under white text and a light one under near-black text, each with
    the smallest opacity (in steps of 1/32) that makes the worst pixel pass, and keeps the
    lighter-handed of the two. The blended pixels are written back exactly as measured.
    """
    pad = max(2, gap // 2)
    x0 = max(0, min(b[0] for b in boxes.values()) - pad)
    y0 = max(0, min(b[1] for b in boxes.values()) - pad)
    x1 = min(size[0], max(b[2] for b in boxes.values()) + pad)
    y1 = min(size[1], max(b[3] for b in boxes.values()) + pad)
    region = np.asarray(canvas.crop((x0, y0, x1, y1)), dtype=np.float32)
    best: tuple[float, np.ndarray, str] | None = None
    for tone, text in (((0, 0, 0), LIGHT_TEXT), ((255, 255, 255), DARK_TEXT)):
        target = np.array(tone, dtype=np.float32)
        low_step, high_step = 0, 32
        while low_step < high_step:  # the smallest passing opacity, by bisection
            mid = (low_step + high_step) // 2
            blended = _blend(region, target, mid / 32)
            lo, hi = luminance_range(blended)
            if worst_contrast(text, lo, hi) >= TARGET_CONTRAST:
                high_step = mid
            else:
                low_step = mid + 1
        alpha = low_step / 32
        if best is None or alpha < best[0]:
            best = (alpha, _blend(region, target, alpha), to_hex(tone))
    alpha, blended, tone_hex = best  # type: ignore[misc]
    canvas.paste(Image.fromarray(blended, "RGB"), (x0, y0))
    return {"alpha": alpha, "color": tone_hex, "box": (x0, y0, x1, y1)}


def _blend(region: np.ndarray, tone: np.ndarray, alpha: float) -> np.ndarray:
    return np.rint(region * (1 - alpha) + tone * alpha).clip(0, 255).astype(np.uint8)


def _button_colours(
    colors: list[str],
) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
    """(button colour, label colour): the brand's most saturated colour, darkened or
    lightened until black or white text on it reaches 4.5:1."""
    parsed = [c for c in (parse_hex(v) for v in colors) if c] or [(31, 41, 55)]
    button = max(parsed, key=lambda c: (max(c) - min(c), -parsed.index(c)))
    for step in range(0, 21):
        for tone, label in (((0, 0, 0), LIGHT_TEXT), ((255, 255, 255), DARK_TEXT)):
            mixed = tuple(round(v + (t - v) * step / 20) for v, t in zip(button, tone, strict=True))
            if contrast_ratio(luminance(mixed), luminance(label)) >= TARGET_CONTRAST:
                return mixed, label  # type: ignore[return-value]
    return (0, 0, 0), LIGHT_TEXT


# ---------------------------------------------------------------------------------------
# Checks


def overlaps(boxes: dict[str, Box]) -> list[list[str]]:
    """Pairs of box names whose areas intersect."""
    names = sorted(boxes)
    found = []
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            p, q = boxes[a], boxes[b]
            if min(p[2], q[2]) > max(p[0], q[0]) and min(p[3], q[3]) > max(p[1], q[1]):
                found.append([a, b])
    return found


def outside_margin(boxes: dict[str, Box], size: tuple[int, int], m: int) -> list[str]:
    """Names of boxes that reach into the safe margin (or beyond the banner)."""
    return sorted(
        name
        for name, (x0, y0, x1, y1) in boxes.items()
        if x0 < m or y0 < m or x1 > size[0] - m or y1 > size[1] - m
    )


def alt_text(copy: dict[str, str]) -> str:
    """Alt text from the headline and the body, at most 250 characters."""
    parts = []
    for name in ("headline", "body"):
        text = " ".join(str(copy.get(name) or "").split())
        if text:
            parts.append(text if text[-1] in ".!?…" else text + ".")
    text = " ".join(parts)
    if len(text) <= 250:
        return text
    cut = text[:249].rsplit(" ", 1)[0].rstrip(" ,;:")
    return cut + "…"


# ---------------------------------------------------------------------------------------
# Batches


@dataclass
class BannerJob:
    """One banner to compose and encode."""

    background: Image.Image
    size: tuple[int, int]
    copy: dict[str, str]
    products: list[Image.Image] = field(default_factory=list)
    style: BrandStyle | None = None
    # The segment key the layout model is conditioned on (None: unknown).
    segment: str | None = None
    seed: int | None = None
    # Filled by compose_many (sampled in the parent process, repaired in the workers).
    proposals: LayoutProposals | None = None


@dataclass
class ComposedBanner:
    """A composed banner's files and facts (no pixels: they are in the renditions)."""

    size: tuple[int, int]
    boxes: dict[str, Box]
    report: dict[str, Any]
    alt: str
    renditions: list[Rendition]
    record: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        report = self.report
        return not (report["overlaps"] or report["contrast_failures"] or report["outside_margin"])


@dataclass(frozen=True)
class EncodeOptions:
    widths: tuple[int, ...] = ()
    fmt: str = "WEBP"
    fallback: str = "JPEG"
    quality: int = 85
    method: int | None = 2


# Jobs of the current compose_many call, shared with forked workers without pickling.
_JOBS: list[BannerJob] = []
_OPTIONS: EncodeOptions = EncodeOptions()
_STYLE: BrandStyle | None = None
_CACHE: _ResizeCache | None = None


def _run(index: int) -> ComposedBanner:
    global _CACHE
    if _CACHE is None:
        _CACHE = _ResizeCache()
    return _compose_encode(_JOBS[index], _STYLE, _OPTIONS, _CACHE)


def _run_chunk(indices: list[int]) -> list[ComposedBanner]:
    return [_run(i) for i in indices]


def _compose_encode(
    job: BannerJob, style: BrandStyle | None, options: EncodeOptions, cache: _ResizeCache | None
) -> ComposedBanner:
    banner = compose_banner(
        job.background,
        job.size,
        job.copy,
        job.products,
        job.style or style or BrandStyle(),
        _resized=cache,
        segment=job.segment,
        seed=job.seed,
        proposals=job.proposals,
        use_model=False,
    )
    files = renditions(
        banner.image,
        list(options.widths),
        options.fmt,
        options.fallback,
        options.quality,
        options.method,
    )
    return ComposedBanner(
        banner.image.size, banner.boxes, banner.report, alt_text(job.copy), files, banner.record
    )


def _can_fork() -> bool:
    if "fork" not in multiprocessing.get_all_start_methods():
        return False
    if multiprocessing.current_process().daemon:
        return False  # e.g. a Celery prefork child: it may not have children
    try:
        import torch

        if torch.cuda.is_initialized():
            return False  # CUDA does not survive fork
    except ImportError:
        pass
    return True


def compose_many(
    jobs: list[BannerJob],
    workers: int | None = None,
    widths: list[int] | None = None,
    fmt: str | None = None,
    fallback: str | None = None,
    quality: int | None = None,
    method: int | None = 2,
) -> list[ComposedBanner]:
    """Compose and encode many banners, in order, over ``workers`` processes.

    ``workers`` defaults to the CPUs this process may use. Jobs reach forked workers
    without being copied; each worker keeps its fonts, layouts and resized product images.
    Where forking is unsafe (a daemonic Celery child, CUDA already initialised, no fork on
    this platform) a thread pool is used instead (Pillow encodes and resizes without the
    GIL). ``widths``, ``fmt``, ``fallback`` and ``quality`` default to
    ``AIGC["GENERATION"]``'s ``RENDITION_WIDTHS``, ``IMAGE_FORMAT``, ``FALLBACK_FORMAT`` and
    ``QUALITY``; ``method`` is WebP's effort (0..6; 2 is about twice as fast as Pillow's 4
    for nearly the same size).
    """
    global _JOBS, _OPTIONS, _STYLE, _CACHE
    if not jobs:
        return []
    generation = _generation_settings()
    options = EncodeOptions(
        tuple(generation["RENDITION_WIDTHS"] if widths is None else widths),
        (fmt or generation["IMAGE_FORMAT"]).upper(),
        (generation["FALLBACK_FORMAT"] if fallback is None else fallback).upper(),
        int(generation["QUALITY"] if quality is None else quality),
        method,
    )
    style = None if all(job.style for job in jobs) else _default_style()
    jobs = _with_proposals(jobs, style)
    if workers is None:
        workers = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1
    workers = max(1, min(int(workers), len(jobs)))
    if workers == 1:
        cache = _ResizeCache()
        return [_compose_encode(job, style, options, cache) for job in jobs]
    if not _can_fork():
        cache = _ResizeCache()
        with ThreadPoolExecutor(workers) as pool:
            return list(pool.map(lambda job: _compose_encode(job, style, options, cache), jobs))
    _JOBS, _OPTIONS, _STYLE, _CACHE = list(jobs), options, style, None
    try:
        # Contiguous chunks: neighbouring jobs tend to share products and layouts.
        per_chunk = max(1, min(16, len(jobs) // (workers * 4) or 1))
        chunks = [
            list(range(i, min(i + per_chunk, len(jobs)))) for i in range(0, len(jobs), per_chunk)
        ]
        context = multiprocessing.get_context("fork")
        with context.Pool(workers) as pool:
            results = pool.map(_run_chunk, chunks, chunksize=1)
    finally:
        _JOBS, _STYLE = [], None
    return [banner for chunk in results for banner in chunk]


def _with_proposals(jobs: list[BannerJob], style: BrandStyle | None) -> list[BannerJob]:
    """The jobs with layouts sampled for all of them in one model call (in this process:
    the workers never touch torch or the database)."""
    from dataclasses import replace

    items = []
    for job in jobs:
        logo = (job.style or style or BrandStyle()).logo
        products = len([p for p in job.products if p is not None][:MAX_PRODUCTS])
        copy = {n: str(job.copy.get(n) or "") for n in TEXT_FIELDS if job.copy.get(n)}
        items.append((tuple(job.size), copy, products, logo is not None, job.segment, job.seed))
    proposals = propose_layouts(items)
    return [
        job if found is None or job.proposals is not None else replace(job, proposals=found)
        for job, found in zip(jobs, proposals, strict=True)
    ]


def _generation_settings() -> dict[str, Any]:
    from django.core.exceptions import ImproperlyConfigured

    from aigc_django.conf import DEFAULTS, aigc_settings

    try:
        return aigc_settings.GENERATION
    except ImproperlyConfigured:  # Django settings not configured (a script)
        return DEFAULTS["GENERATION"]


def _default_style() -> BrandStyle:
    from django.core.exceptions import ImproperlyConfigured

    try:
        return BrandStyle.from_settings()
    except ImproperlyConfigured:  # Django settings not configured (a script)
        return BrandStyle()


def clear_caches() -> None:
    """Forget cached fonts and layouts (tests; the plain benchmark loop)."""
    get_font.cache_clear()
    _plan_cached.cache_clear()
