"""The banner composer and the image helpers.

The layout and contrast checks here are computed from the returned boxes and pixels with
the test's own arithmetic (WCAG luminance, the margin rule), not with the composer's.
"""

from __future__ import annotations

import io
import logging
import struct
import zlib

import numpy as np
import pytest
from PIL import Image, ImageDraw

from aigc_django.generation import images
from aigc_django.generation.compose import (
    SIZES,
    BannerJob,
    BrandStyle,
    alt_text,
    compose_banner,
    compose_many,
)
from aigc_django.generation.images import open_image, product_image, renditions, srcset

LONG = {
    "headline": "Fresh picks for your summer runs: lightweight trail shoes and breathable shirts",
    "body": (
        "Discover our breathable running shoes and linen shirts, chosen for the way you move, "
        "with free returns for thirty days and next-day delivery on every order."
    ),
    "cta": "Shop the whole collection",
}
SHORT = {"headline": "New in: shoes", "body": "Lighter than ever.", "cta": "Shop now"}
CUSTOM_SIZES = [(970, 250), (160, 600), (500, 500)]


# --- the test's own WCAG arithmetic -----------------------------------------------------


def linear(channel: np.ndarray) -> np.ndarray:
    c = channel.astype(np.float64) / 255
    return np.where(c <= 0.03928, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)


def relative_luminance(rgb: np.ndarray) -> np.ndarray:
    rgb = np.asarray(rgb)
    return (
        0.2126 * linear(rgb[..., 0]) + 0.7152 * linear(rgb[..., 1]) + 0.0722 * linear(rgb[..., 2])
    )


def worst_ratio(text_rgb: tuple[int, int, int], pixels: np.ndarray) -> float:
    text = float(relative_luminance(np.array(text_rgb)))
    lum = relative_luminance(pixels).ravel()
    ratios = (np.maximum(lum, text) + 0.05) / (np.minimum(lum, text) + 0.05)
    return float(ratios.min())


def hex_rgb(value: str) -> tuple[int, int, int]:
    return tuple(int(value[i : i + 2], 16) for i in (1, 3, 5))  # type: ignore[return-value]


# --- inputs -----------------------------------------------------------------------------


def transparent_product(size: tuple[int, int] = (420, 180)) -> Image.Image:
    """A wide product on a transparent background (as a cut-out PNG)."""
    image = Image.new("RGBA", size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(image)
    draw.ellipse((10, 40, size[0] - 10, size[1] - 10), fill=(200, 40, 40, 255))
    draw.rectangle((40, 10, 160, 100), fill=(30, 30, 160, 230))
    return Image.open(io.BytesIO(png_bytes(image)))


def opaque_product(size: tuple[int, int] = (180, 520)) -> Image.Image:
    """A tall photo on white, read back from JPEG."""
    image = Image.new("RGB", size, (250, 250, 250))
    ImageDraw.Draw(image).rectangle((30, 40, size[0] - 30, size[1] - 40), fill=(20, 120, 60))
    out = io.BytesIO()
    image.save(out, "JPEG", quality=90)
    return open_image(out.getvalue())


def logo_image() -> Image.Image:
    image = Image.new("RGBA", (240, 80), (0, 0, 0, 0))
    ImageDraw.Draw(image).rounded_rectangle((0, 0, 239, 79), 16, fill=(245, 158, 11, 255))
    return image


def png_bytes(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


def background(kind: str, size: tuple[int, int]) -> Image.Image:
    width, height = size
    if kind == "grey":
        return Image.new("RGB", size, (119, 119, 119))
    if kind == "white":
        return Image.new("RGB", size, (255, 255, 255))
    if kind == "black":
        return Image.new("RGB", size, (0, 0, 0))
    if kind == "noise":
        rng = np.random.default_rng(0)
        return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))
    if kind == "gradient":  # from black to white, and a different aspect ratio
        return Image.linear_gradient("L").resize((width * 2, height)).convert("RGB")
    raise ValueError(kind)


# --- the checks -------------------------------------------------------------------------


def check_banner(banner, size: tuple[int, int]) -> None:
    """Overlaps, margins, ink placement and contrast, from the boxes and the pixels."""
    width, height = size
    assert banner.image.size == size and banner.image.mode == "RGB"
    m = max(8, round(0.05 * min(size)))
    boxes = banner.boxes
    names = sorted(boxes)
    for name in names:
        x0, y0, x1, y1 = boxes[name]
        assert x0 < x1 and y0 < y1, name
        assert m <= x0 and m <= y0 and x1 <= width - m and y1 <= height - m, (name, boxes[name])
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            p, q = boxes[a], boxes[b]
            disjoint = p[2] <= q[0] or q[2] <= p[0] or p[3] <= q[1] or q[3] <= p[1]
            assert disjoint, (a, b, p, q)
    final = np.asarray(banner.image, dtype=np.int16)
    backdrop = np.asarray(banner.backdrop, dtype=np.int16)
    ink = np.any(final != backdrop, axis=2)
    text_mask = np.zeros_like(ink)
    for name in ("headline", "body", "cta"):
        if name in boxes:
            x0, y0, x1, y1 = boxes[name]
            text_mask[y0:y1, x0:x1] = True
    # Text is drawn only inside text boxes; everything else is the backdrop.
    assert not np.any(ink & ~text_mask)
    for name in ("headline", "body", "cta"):
        if name not in boxes:
            continue
        x0, y0, x1, y1 = boxes[name]
        box_ink = ink[y0:y1, x0:x1]
        assert box_ink.any(), f"{name} has a box but no text"
        rows, cols = np.nonzero(box_ink)
        ix0, iy0, ix1, iy1 = (
            cols.min() + x0,
            rows.min() + y0,
            cols.max() + x0 + 1,
            rows.max() + y0 + 1,
        )
        colour = hex_rgb(banner.report["colors"][name])
        under = backdrop[iy0:iy1, ix0:ix1]
        ratio = worst_ratio(colour, under)
        assert ratio >= 4.5, (name, ratio)
        # Every changed pixel is a blend of the backdrop and the text colour.
        changed = final[y0:y1, x0:x1][box_ink]
        behind = backdrop[y0:y1, x0:x1][box_ink]
        text = np.array(colour)
        assert np.all(changed >= np.minimum(behind, text) - 2)
        assert np.all(changed <= np.maximum(behind, text) + 2)
    assert banner.report["overlaps"] == []
    assert banner.report["contrast_failures"] == []
    assert banner.report["outside_margin"] == []
    assert banner.ok


SCENARIOS = [
    (size, copy_name, kind, with_logo)
    for size in SIZES + CUSTOM_SIZES
    for copy_name in ("long", "short")
    for kind in ("transparent", "opaque", "both")
    for with_logo in (True, False)
]


@pytest.mark.parametrize(("size", "copy_name", "kind", "with_logo"), SCENARIOS)
def test_every_size_copy_and_product_kind_passes_the_checks(size, copy_name, kind, with_logo):
    backgrounds = ["grey", "noise", "white", "black", "gradient"]
    index = SCENARIOS.index((size, copy_name, kind, with_logo))
    products = {
        "transparent": [transparent_product()],
        "opaque": [opaque_product()],
        "both": [opaque_product(), transparent_product((200, 200))],
    }[kind]
    style = BrandStyle(logo=logo_image() if with_logo else None)
    copy = LONG if copy_name == "long" else SHORT
    banner = compose_banner(
        background(backgrounds[index % 5], size), size, copy, products, style, keep_backdrop=True
    )
    check_banner(banner, size)
    report = banner.report
    assert "headline" in banner.boxes
    dropped = set(report["dropped"])
    assert dropped <= {"body", "products", "logo", "cta"}
    if min(size) >= 250 and size != (160, 600):
        # Everything fits on the standard and roomy sizes.
        assert "products" not in dropped and "product_0" in banner.boxes
        assert "cta" in banner.boxes and "logo" not in dropped
    if copy_name == "short" and min(size) >= 250:
        assert "body" in banner.boxes
    for name in ("headline", "body", "cta"):
        if copy.get(name) and name not in banner.boxes:
            assert name in dropped
    for name, box in banner.boxes.items():
        if name.startswith("product_"):
            source = products[int(name.split("_")[1])]
            aspect = source.width / source.height
            assert abset(aspect, (box[2] - box[0]) / (box[3] - box[1]), box)
    assert report["font_sizes"]["headline"] >= 12
    for field_name in report["contrast"]:
        assert report["contrast"][field_name] >= 4.5


def abset(expected: float, got: float, box) -> bool:
    """Aspect ratios agree within a pixel's rounding."""
    width, height = box[2] - box[0], box[3] - box[1]
    return abs(got - expected) <= expected * (1.5 / min(width, height)) + 0.01


@pytest.mark.parametrize("kind", ["grey", "noise", "white", "black"])
@pytest.mark.parametrize("size", [(1200, 628), (300, 250), (728, 90)])
def test_worst_case_backgrounds_pass_thanks_to_the_scrim(kind, size):
    style = BrandStyle(logo=logo_image())
    banner = compose_banner(
        background(kind, size), size, LONG, [transparent_product()], style, keep_backdrop=True
    )
    check_banner(banner, size)
    if kind == "noise":
        assert banner.report["scrim"] is True
        assert 0 < banner.report["scrim_alpha"] <= 1
    if kind in ("white", "black"):
        assert banner.report["scrim"] is False


def test_wide_banners_put_text_left_and_products_right():
    for size in [(1920, 600), (728, 90), (1200, 628)]:
        banner = compose_banner(
            background("white", size), size, SHORT, [opaque_product()], BrandStyle()
        )
        boxes = banner.boxes
        assert boxes["headline"][2] <= boxes["product_0"][0], size


def test_tall_and_square_banners_stack():
    for size in [(1080, 1080), (750, 1000), (300, 250)]:
        banner = compose_banner(
            background("white", size), size, SHORT, [opaque_product()], BrandStyle()
        )
        boxes = banner.boxes
        assert boxes["headline"][3] <= boxes["product_0"][1], size
        assert boxes["product_0"][3] <= boxes["cta"][1], size


def test_tiny_banner_drops_the_body_rather_than_overflowing():
    size = (728, 90)
    banner = compose_banner(
        background("grey", size), size, LONG, [opaque_product()], BrandStyle(), keep_backdrop=True
    )
    check_banner(banner, size)
    assert "body" in banner.report["dropped"]
    assert "body" not in banner.boxes


def test_impossible_sizes_drop_everything_and_never_raise():
    for size in [(20, 20), (120, 30)]:
        banner = compose_banner(
            background("grey", size), size, LONG, [opaque_product()], BrandStyle()
        )
        assert banner.image.size == size
        assert banner.report["outside_margin"] == [] and banner.report["overlaps"] == []
        for name in ("headline", "body", "cta"):
            assert name in banner.boxes or name in banner.report["dropped"]


def test_cta_button_meets_contrast_with_any_brand_colour():
    for colours in (["#777777"], ["#ffff00", "#00ffff"], ["#000000"], ["#3b82f6"]):
        size = (1200, 628)
        banner = compose_banner(
            background("white", size),
            size,
            SHORT,
            [],
            BrandStyle(colors=colours),
            keep_backdrop=True,
        )
        check_banner(banner, size)
        assert banner.report["contrast"]["cta"] >= 4.5


def test_the_caller_background_is_left_untouched():
    size = (300, 250)
    original = background("noise", size)
    before = original.tobytes()
    compose_banner(original, size, LONG, [], BrandStyle())
    assert original.tobytes() == before


def test_alt_text_comes_from_headline_and_body():
    assert alt_text(SHORT) == "New in: shoes. Lighter than ever."
    long = alt_text({"headline": "A " * 200, "body": "b"})
    assert len(long) <= 250 and long.endswith("…")
    assert alt_text({"cta": "Shop"}) == ""


def test_brand_style_from_settings_survives_broken_files(aigc, tmp_path, caplog):
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image")
    aigc(BRAND={"LOGO": str(broken), "FONT": str(tmp_path / "missing.ttf"), "COLORS": ["#123456"]})
    with caplog.at_level(logging.WARNING, logger="aigc_django"):
        style = BrandStyle.from_settings()
    assert style.logo is None and style.font is None
    assert style.colors == ["#123456"]
    assert "LOGO" in caplog.text and "FONT" in caplog.text
    good = tmp_path / "logo.png"
    good.write_bytes(png_bytes(logo_image()))
    aigc(BRAND={"LOGO": str(good)})
    style = BrandStyle.from_settings()
    assert style.logo is not None and style.logo.size == (240, 80)
    size = (1200, 628)
    banner = compose_banner(background("white", size), size, SHORT, [], style, keep_backdrop=True)
    check_banner(banner, size)
    assert "logo" in banner.boxes


def test_compose_many_matches_one_by_one_and_encodes():
    size = (1200, 628)
    style = BrandStyle(logo=logo_image())
    product = transparent_product()
    jobs = [
        BannerJob(background(kind, size), size, copy, [product], style)
        for kind in ("grey", "white", "gradient")
        for copy in (SHORT, LONG)
    ]
    batch = compose_many(jobs, workers=2, widths=[480], fmt="WEBP", fallback="JPEG")
    serial = compose_many(jobs, workers=1, widths=[480], fmt="WEBP", fallback="JPEG")
    assert len(batch) == len(jobs)
    for one, other, job in zip(batch, serial, jobs, strict=True):
        assert one.boxes == compose_banner(job.background, size, job.copy, [product], style).boxes
        assert one.boxes == other.boxes and one.report == other.report
        assert one.ok
        assert one.alt == alt_text(job.copy)
        assert [r.name for r in one.renditions] == [
            "1200w.webp",
            "1200w.jpg",
            "480w.webp",
            "480w.jpg",
        ]
        assert Image.open(io.BytesIO(one.renditions[0].content)).size == size


# --- image helpers ----------------------------------------------------------------------


def bomb_png(width: int, height: int) -> bytes:
    """A small PNG whose header claims ``width`` x ``height`` pixels."""
    data = bytearray(png_bytes(Image.new("1", (8, 8))))
    ihdr = 8  # after the signature: length (4), b"IHDR" (4), data (13), crc (4)
    struct.pack_into(">II", data, ihdr + 8, width, height)
    crc = zlib.crc32(bytes(data[ihdr + 4 : ihdr + 8 + 13]))
    struct.pack_into(">I", data, ihdr + 8 + 13, crc)
    return bytes(data)


@pytest.mark.parametrize(
    "source",
    [
        b"",
        b"\x89PNG\r\n\x1a\n broken",
        b"GIF89a" + b"\x00" * 10,
        "/no/such/file.png",
    ],
)
def test_open_image_gives_none_for_broken_or_missing(source, caplog):
    with caplog.at_level(logging.WARNING, logger="aigc_django"):
        assert open_image(source) is None
    assert caplog.records


def test_open_image_refuses_decompression_bombs(caplog):
    with caplog.at_level(logging.WARNING, logger="aigc_django"):
        assert open_image(bomb_png(10_000, 10_000)) is None  # under Pillow's own limit
        assert open_image(bomb_png(30_000, 30_000)) is None  # over it
    assert len(caplog.records) == 2
    assert images.MAX_PIXELS < 10_000 * 10_000


def test_open_image_reads_paths_bytes_and_files(tmp_path):
    transparent = png_bytes(logo_image())
    path = tmp_path / "logo.png"
    path.write_bytes(transparent)
    assert open_image(path).mode == "RGBA"
    assert open_image(str(path)).size == (240, 80)
    with open(path, "rb") as fh:
        assert open_image(fh).mode == "RGBA"
    opaque_png = png_bytes(Image.new("RGBA", (10, 10), (1, 2, 3, 255)))
    assert open_image(opaque_png).mode == "RGB"
    big = io.BytesIO()
    Image.new("RGB", (3000, 1000), (9, 9, 9)).save(big, "JPEG")
    assert open_image(big.getvalue()).size == (2048, 683)


def test_product_image_resolves_local_urls_only(settings, tmp_path):
    media, static = tmp_path / "media", tmp_path / "static"
    (media / "products").mkdir(parents=True)
    (static / "shop").mkdir(parents=True)
    (media / "products" / "a b.png").write_bytes(png_bytes(logo_image()))
    (static / "shop" / "b.png").write_bytes(png_bytes(logo_image()))
    settings.MEDIA_ROOT = str(media)
    settings.STATICFILES_DIRS = [str(static)]
    settings.ALLOWED_HOSTS = ["shop.example", "*"]
    assert product_image("/media/products/a%20b.png").size == (240, 80)
    assert product_image("products/a b.png").size == (240, 80)
    assert product_image("/static/shop/b.png").size == (240, 80)
    assert product_image("https://shop.example/media/products/a%20b.png").size == (240, 80)
    assert product_image(str(media / "products" / "a b.png")).size == (240, 80)
    assert product_image((media / "products" / "a b.png").as_uri()).size == (240, 80)
    assert product_image("https://elsewhere.example/media/products/a%20b.png") is None
    assert product_image("http://127.0.0.1/x.png") is None
    assert product_image("/media/../../etc/passwd") is None
    assert product_image("/static/missing.png") is None
    assert product_image("ftp://shop.example/x.png") is None
    assert product_image("") is None


def test_renditions_are_valid_webp_and_jpeg_at_the_right_widths():
    image = Image.linear_gradient("L").resize((1200, 628)).convert("RGB")
    files = renditions(image, [480, 960, 2000], "WEBP", "JPEG", quality=80)
    assert [f.name for f in files] == [
        "1200w.webp",
        "1200w.jpg",
        "960w.webp",
        "960w.jpg",
        "480w.webp",
        "480w.jpg",
    ]
    for item in files:
        decoded = Image.open(io.BytesIO(item.content))
        assert decoded.format == item.format
        assert decoded.size == (item.width, item.height)
        assert item.height == round(628 * item.width / 1200)
    png_only = renditions(image, [], "PNG", "")
    assert [f.name for f in png_only] == ["1200w.png"]


def test_srcset():
    value = srcset({960: "/m/b 960.webp", 480: "/m/a.webp", 1200: ""})
    assert value == "/m/a.webp 480w, /m/b%20960.webp 960w"
