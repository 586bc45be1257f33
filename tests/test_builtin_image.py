"""The builtin image backend: seeded, batched procedural backgrounds rendered with torch."""

from __future__ import annotations

import numpy as np
import pytest
from django.core.exceptions import ImproperlyConfigured

from aigc_django.generation.backends import image_backend
from aigc_django.generation.backends.builtin_image import BuiltinImageBackend, parse_colour
from aigc_django.generation.briefs import Brief

BACKEND = "aigc_django.generation.backends.builtin_image.BuiltinImageBackend"


def brief(seed: int = 0, palette: list[str] | None = None) -> Brief:
    return Brief(
        slot="home-hero",
        segment="runners",
        segment_name="Runners",
        fields={"headline": 60},
        categories=[("shoes", "Shoes")],
        palette=palette if palette is not None else ["#2563eb", "#f97316"],
        seed=seed,
    )


def pixels(generated) -> np.ndarray:
    return np.asarray(generated.image, dtype=np.int16)


def test_same_seed_same_pixels_different_seed_different_image():
    backend = BuiltinImageBackend("default", {"DEVICE": "cpu"})
    first = backend.generate([brief(7), brief(8)], (320, 200))
    again = BuiltinImageBackend("default", {"DEVICE": "cpu"}).generate([brief(7)], (320, 200))
    assert np.array_equal(pixels(first[0]), pixels(again[0]))
    assert np.abs(pixels(first[0]) - pixels(first[1])).mean() > 2


def test_a_batch_gives_one_image_per_brief_at_the_size_with_provenance():
    backend = BuiltinImageBackend("default", {})
    briefs = [brief(seed) for seed in range(5)]
    images = backend.generate(briefs, (300, 250))
    assert len(images) == 5
    for generated, item in zip(images, briefs, strict=True):
        assert generated.image.size == (300, 250)
        assert generated.image.mode == "RGB"
        assert generated.provenance.backend == "builtin"
        assert generated.provenance.seed == item.seed
        assert generated.provenance.brief_hash == item.hash
        assert generated.notes["style"] in ("gradient", "blobs", "bands")
        assert "generate" in generated.provenance.timings
    # An image does not depend on the rest of its batch.
    alone = backend.generate([briefs[3]], (300, 250))[0]
    assert np.array_equal(pixels(alone), pixels(images[3]))


def test_batches_split_by_pixel_budget_render_the_same_images():
    small = BuiltinImageBackend("default", {"MAX_BATCH_PIXELS": 1})
    large = BuiltinImageBackend("default", {})
    briefs = [brief(seed) for seed in range(3)]
    for a, b in zip(
        small.generate(briefs, (64, 48)), large.generate(briefs, (64, 48)), strict=True
    ):
        assert np.array_equal(pixels(a), pixels(b))


def test_backgrounds_are_calm_and_follow_the_colours(aigc):
    aigc(BRAND={"COLORS": ["#c00000", "#ff5050"]})
    backend = BuiltinImageBackend("default", {"STYLE": "gradient", "GRAIN": 0})
    red = pixels(backend.generate([brief(1, ["#b00000"])], (200, 100))[0])
    assert red[..., 0].mean() > red[..., 2].mean() + 30
    # Calm: neighbouring pixels barely differ (no busy texture under the text).
    assert np.abs(np.diff(red, axis=1)).mean() < 2


@pytest.mark.parametrize("style", ["gradient", "blobs", "bands"])
def test_every_style_renders(style):
    generated = BuiltinImageBackend("default", {"STYLE": style}).generate([brief(3)], (120, 90))
    assert generated[0].notes["style"] == style
    assert generated[0].image.size == (120, 90)


def test_no_usable_colour_still_renders(aigc):
    aigc(BRAND={"COLORS": ["not a colour"]})
    generated = BuiltinImageBackend("default", {}).generate([brief(2, ["#12"])], (50, 40))
    assert generated[0].image.size == (50, 40)


@pytest.mark.parametrize(
    "options",
    [
        {"STYLE": "photo"},
        {"GRAIN": 0.5},
        {"GRAIN": "a lot"},
        {"DEVICE": "tpu"},
        {"DEVICE": 0},
        {"MAX_BATCH_PIXELS": 0},
        {"COLOURS": ["#000000"]},
    ],
)
def test_bad_options_are_refused(options):
    with pytest.raises(ImproperlyConfigured):
        BuiltinImageBackend("default", options)


def test_the_registry_builds_it_from_settings(aigc):
    assert isinstance(image_backend(), BuiltinImageBackend)  # the default setting
    aigc(
        IMAGE_BACKENDS={
            "default": {"BACKEND": BACKEND, "OPTIONS": {}},
            "bands": {"BACKEND": BACKEND, "OPTIONS": {"STYLE": "bands", "DEVICE": "cpu"}},
        }
    )
    backend = image_backend("bands")
    assert isinstance(backend, BuiltinImageBackend)
    assert backend.style == "bands"
    assert image_backend("bands") is backend
    generated = backend.generate([brief(4)], (100, 60))
    assert generated[0].provenance.model == "procedural-bands"
    assert backend.device == "cpu"


def test_parse_colour():
    assert parse_colour("#ff8000") == (255, 128, 0)
    assert parse_colour("#f80") == (255, 136, 0)
    assert parse_colour("orange") is None
