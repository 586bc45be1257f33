"""Banner quality: overlaps, contrast failures and margin violations over many banners.

    .venv/bin/python benchmarks/banner_quality.py [--seeds 4] [--sheet docs/img/banners.png]

Composes every standard size plus custom ones, with short and long copy, with a cut-out
PNG product, an opaque JPEG product, both or none, with and without a logo, on builtin
backgrounds (``--seeds`` of them per size) and on the worst cases (mid-grey, busy noise,
white, black). Every banner is checked from its boxes and pixels, independently of the
composer's own report: box overlaps, boxes inside the safe margin, and the worst-case
WCAG contrast between each text colour and the pixels under its ink (measured on the
banner before its text was drawn). ``--sheet`` also writes a contact sheet of one banner per
size.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.banners import COPIES, make_products, setup  # noqa: E402

LONG = {
    "headline": "Fresh picks for your summer runs: lightweight trail shoes and breathable shirts",
    "body": (
        "Discover our breathable running shoes and linen shirts, chosen for the way you move, "
        "with free returns for thirty days and next-day delivery on every order."
    ),
    "cta": "Shop the whole collection",
}
SHORT = COPIES[0]
CUSTOM = [(970, 250), (160, 600), (320, 50), (500, 500), (1600, 400)]


def lum(pixels: np.ndarray) -> np.ndarray:
    c = pixels.astype(np.float64) / 255
    c = np.where(c <= 0.03928, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    return 0.2126 * c[..., 0] + 0.7152 * c[..., 1] + 0.0722 * c[..., 2]


def check(banner, size) -> tuple[int, int, int]:
    """(overlapping pairs, text fields under 4.5:1, boxes outside the safe margin)."""
    width, height = size
    m = max(8, round(0.05 * min(size)))
    boxes = banner.boxes
    names = sorted(boxes)
    overlaps = sum(
        1
        for i, a in enumerate(names)
        for b in names[i + 1 :]
        if min(boxes[a][2], boxes[b][2]) > max(boxes[a][0], boxes[b][0])
        and min(boxes[a][3], boxes[b][3]) > max(boxes[a][1], boxes[b][1])
    )
    outside = sum(
        1
        for x0, y0, x1, y1 in boxes.values()
        if x0 < m or y0 < m or x1 > width - m or y1 > height - m
    )
    final = np.asarray(banner.image, dtype=np.int16)
    backdrop = np.asarray(banner.backdrop, dtype=np.int16)
    ink = np.any(final != backdrop, axis=2)
    failures = 0
    for name in ("headline", "body", "cta"):
        if name not in boxes:
            continue
        x0, y0, x1, y1 = boxes[name]
        rows, cols = np.nonzero(ink[y0:y1, x0:x1])
        if not len(rows):
            failures += 1
            continue
        under = backdrop[
            y0 + rows.min() : y0 + rows.max() + 1, x0 + cols.min() : x0 + cols.max() + 1
        ]
        colour = banner.report["colors"][name]
        text = float(lum(np.array([int(colour[i : i + 2], 16) for i in (1, 3, 5)])))
        back = lum(under)
        ratio = ((np.maximum(back, text) + 0.05) / (np.minimum(back, text) + 0.05)).min()
        failures += ratio < 4.5
    # Ink outside every text box would be text spilling out.
    mask = np.zeros_like(ink)
    for name in ("headline", "body", "cta"):
        if name in boxes:
            x0, y0, x1, y1 = boxes[name]
            mask[y0:y1, x0:x1] = True
    outside += int(np.any(ink & ~mask))
    return overlaps, int(failures), outside


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=4)
    parser.add_argument("--sheet", default="")
    args = parser.parse_args()
    setup()
    from PIL import Image, ImageDraw

    from aigc_django.generation.backends.builtin_image import BuiltinImageBackend
    from aigc_django.generation.briefs import Brief
    from aigc_django.generation.compose import SIZES, BrandStyle, compose_banner

    print(f"$ .venv/bin/python benchmarks/banner_quality.py --seeds {args.seeds}")
    cut_out, photo = make_products()
    product_sets = {"none": [], "png": [cut_out], "jpeg": [photo], "both": [photo, cut_out]}
    logo = Image.new("RGBA", (360, 120), (0, 0, 0, 0))
    ImageDraw.Draw(logo).rounded_rectangle((0, 0, 359, 119), 24, fill=(245, 158, 11, 255))
    styles = {"logo": BrandStyle(logo=logo), "no logo": BrandStyle()}
    backend = BuiltinImageBackend("default", {"DEVICE": "cpu"})
    rng = np.random.default_rng(0)
    totals: Counter = Counter()
    by_size: dict[tuple[int, int], Counter] = {}
    sheet_items = []
    for size in SIZES + CUSTOM:
        width, height = size
        briefs = [
            Brief("s", "g", "G", {}, palette=["#2563eb", "#be123c", "#0f766e"][s % 3 :], seed=s)
            for s in range(args.seeds)
        ]
        backgrounds = [("builtin", g.image) for g in backend.generate(briefs, size)]
        backgrounds += [
            ("grey", Image.new("RGB", size, (119, 119, 119))),
            ("white", Image.new("RGB", size, (255, 255, 255))),
            ("black", Image.new("RGB", size, (0, 0, 0))),
            ("noise", Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))),
        ]
        counts = by_size.setdefault(size, Counter())
        for bg_name, bg in backgrounds:
            for copy in (SHORT, LONG):
                for products in product_sets.values():
                    for style in styles.values():
                        banner = compose_banner(bg, size, copy, products, style, keep_backdrop=True)
                        overlaps, failures, outside = check(banner, size)
                        for counter in (totals, counts):
                            counter["banners"] += 1
                            counter["overlaps"] += overlaps
                            counter["contrast failures"] += failures
                            counter["outside margin"] += outside
                            counter["scrims"] += banner.report["scrim"]
                            counter["dropped body"] += "body" in banner.report["dropped"]
                            counter["dropped products"] += "products" in banner.report["dropped"]
                            counter["self-report not ok"] += not banner.ok
                        first = bg_name == "builtin" and copy is SHORT and style.logo is not None
                        if first and len(products) == 1 and size not in dict(sheet_items):
                            sheet_items.append((size, banner.image))
    columns = [
        "banners",
        "overlaps",
        "contrast failures",
        "outside margin",
        "scrims",
        "dropped body",
        "dropped products",
        "self-report not ok",
    ]
    print(f"{'size':>10} " + " ".join(f"{c:>18}" for c in columns))
    for size, counts in by_size.items():
        print(f"{size[0]:>5}x{size[1]:<4} " + " ".join(f"{counts[c]:>18}" for c in columns))
    print(f"{'total':>10} " + " ".join(f"{totals[c]:>18}" for c in columns))
    print(
        f"-> {totals['banners']} banners: {totals['overlaps']} overlaps, "
        f"{totals['contrast failures']} contrast failures, {totals['outside margin']} margin "
        "violations (goal: zero each)"
    )
    if args.sheet:
        write_sheet(sheet_items, Path(args.sheet))
        print(f"Contact sheet: {args.sheet}")


def write_sheet(items, path: Path, width: int = 1400) -> None:
    from PIL import Image

    thumbs = []
    for _, image in items:
        thumb = image.copy()
        thumb.thumbnail((440, 300))
        thumbs.append(thumb)
    rows, row, used = [], [], 0
    for thumb in thumbs:
        if used + thumb.width > width and row:
            rows.append(row)
            row, used = [], 0
        row.append(thumb)
        used += thumb.width + 12
    rows.append(row)
    height = sum(max(t.height for t in r) + 12 for r in rows) + 12
    sheet = Image.new("RGB", (width + 12, height), (255, 255, 255))
    y = 12
    for r in rows:
        x = 12
        for thumb in r:
            sheet.paste(thumb, (x, y))
            x += thumb.width + 12
        y += max(t.height for t in r) + 12
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path, optimize=True)


if __name__ == "__main__":
    main()
