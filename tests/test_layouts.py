"""The layout VAE: training through the real code path into versioned artifacts, save and
load, seeded sampling, repair to the hard constraints, the composer's use of the model and
its fallbacks, training data from variants, the PosterLayout metrics, the command and the
task."""

from __future__ import annotations

import logging
import math
import random
from decimal import Decimal
from io import StringIO
from pathlib import Path

import pytest
import torch
from django.core.management import CommandError, call_command
from PIL import Image

from aigc_django.generation import backends, compose, service
from aigc_django.generation.layouts import data, metrics, runtime
from aigc_django.generation.layouts import model as layoutmodel
from aigc_django.generation.layouts.encoding import (
    ELEMENTS,
    UNKNOWN_SEGMENT,
    Condition,
    normalize,
    segment_bucket,
)
from aigc_django.generation.layouts.repair import repair
from aigc_django.generation.layouts.train import TooFewLayouts, train_layout_model
from aigc_django.models import ModelArtifact, Segment, Slot, Variant

FONTS: tuple[str | None, str | None] = (None, None)
SMALL = {"SYNTHETIC": 120, "MIN_LAYOUTS": 50, "EPOCHS": 2, "CANDIDATES": 8, "ENABLED": True}


@pytest.fixture(autouse=True)
def _fresh_runtime():
    torch.set_num_threads(1)
    runtime.reset()
    compose.clear_caches()
    yield
    runtime.reset()


@pytest.fixture
def models_dir(aigc, tmp_path) -> Path:
    aigc(MODEL_DIR=str(tmp_path / "models"), LAYOUT=SMALL)
    return tmp_path / "models"


@pytest.fixture
def trained(aigc, models_dir) -> ModelArtifact:
    """A model good enough to sample from (a few seconds on one core)."""
    aigc(LAYOUT={**SMALL, "SYNTHETIC": 300, "EPOCHS": 30})
    return train_layout_model(device="cpu", seed=0)


def random_banner(rng: random.Random) -> tuple:
    size, copy, products, logo, segment = data._random_banner(rng)
    return size, {k: v for k, v in copy.items() if v}, products, logo, segment


def background(size: tuple[int, int], colour=(200, 210, 220)) -> Image.Image:
    return Image.new("RGB", size, colour)


# ---------------------------------------------------------------------------------------
# Training, artifacts, save and load


@pytest.mark.django_db
def test_training_makes_a_new_active_version_with_a_report(models_dir):
    first = train_layout_model(device="cpu", seed=0)
    assert first.kind == "layout" and first.version == 1 and first.active
    directory = Path(first.path)
    assert directory == models_dir / "layout" / "v1"
    assert (directory / "config.json").is_file() and (directory / "model.safetensors").is_file()
    m = first.metrics
    assert m["layouts"] == m["composer_layouts"] + m["variant_layouts"] >= SMALL["MIN_LAYOUTS"]
    assert m["train_layouts"] + m["heldout_layouts"] == m["layouts"]
    assert m["epochs"] == 2 and m["steps"] > 0 and m["device"] == "cpu"
    for key in ("train_loss", "train_recon", "train_kl", "heldout_recon", "samples_per_s"):
        assert math.isfinite(m[key])
    assert m["config"]["latent"] == 8

    assert m["threads"] == 1 and m["train_seconds"] > 0

    threads = torch.get_num_threads()
    second = train_layout_model(device="cpu", seed=1, threads=2)
    assert second.version == 2 and second.metrics["threads"] == 2
    assert torch.get_num_threads() == threads  # restored
    assert list(ModelArtifact.objects.filter(kind="layout", active=True)) == [second]


@pytest.mark.django_db
def test_save_and_load_round_trip(models_dir):
    artifact = train_layout_model(device="cpu", seed=0)
    model, info = layoutmodel.load(artifact.path)
    assert info["version"] == artifact.version and info["kind"] == "layout"
    directory = Path(artifact.path).parent / "copy-of-v1"
    layoutmodel.save(model, directory, info)
    again, _ = layoutmodel.load(directory)
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, again.state_dict()[name])
    condition = Condition.of((1200, 628), {"headline": "Hello there"}, 1, False, None)
    one = runtime.LayoutSampler(model, 1, artifact.path).propose([condition], [3], 4)
    two = runtime.LayoutSampler(again, 1, str(directory)).propose([condition], [3], 4)
    assert one == two


def test_loading_a_missing_or_corrupt_model_raises_a_clear_error(tmp_path):
    with pytest.raises(layoutmodel.LayoutModelMissing, match="cannot load the layout model"):
        layoutmodel.load(tmp_path / "nowhere")
    model = layoutmodel.LayoutVAE(layoutmodel.LayoutVAEConfig())
    layoutmodel.save(model, tmp_path / "broken", {"version": 1})
    (tmp_path / "broken" / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(layoutmodel.LayoutModelMissing):
        layoutmodel.load(tmp_path / "broken")


def test_seeded_sampling_is_deterministic_and_independent_of_the_batch():
    torch.manual_seed(0)
    sampler = runtime.LayoutSampler(layoutmodel.LayoutVAE(layoutmodel.LayoutVAEConfig()), 1, "")
    a = Condition.of((1200, 628), {"headline": "Summer sale", "cta": "Shop"}, 2, True, "runners")
    b = Condition.of((300, 250), {"headline": "Books"}, 0, False, None)
    first = sampler.propose([a, b], [7, 8], 5)
    assert first == sampler.propose([a, b], [7, 8], 5)
    assert sampler.propose([b], [8], 5)[0] == first[1]
    # Exactly, in a larger batch too (a batched matrix product of another size can differ
    # in the last bits: that made 27 of 40 such batches differ before each condition was
    # decoded on its own).
    assert sampler.propose([a] * 7 + [b], [*range(7), 8], 5)[-1] == first[1]
    assert sampler.propose([a], [9], 5)[0] != first[0]
    assert set(first[0][0]) == {"logo", "headline", "cta", "product_0", "product_1"}
    assert all(0.0 <= v <= 1.0 for boxes in first[0] for box in boxes.values() for v in box)


def test_segment_buckets_are_stable_with_an_unknown_bucket():
    assert segment_bucket(None) == segment_bucket("") == UNKNOWN_SEGMENT
    assert segment_bucket("runners") == segment_bucket("runners") != UNKNOWN_SEGMENT
    assert 1 <= segment_bucket("anything-at-all") < 32


# ---------------------------------------------------------------------------------------
# Repair


def check_repaired(layout, size, reference, copy) -> None:
    assert compose.overlaps(layout.boxes) == []
    assert compose.outside_margin(layout.boxes, size, compose.margin(size)) == []
    assert set(layout.boxes) == set(reference.boxes)
    for name in ("headline", "body"):
        if name in layout.boxes:
            box, block = layout.boxes[name], layout.blocks[name]
            # The text's ink exactly fills its box: nothing overflows.
            assert (box[2] - box[0], box[3] - box[1]) == (block.width, block.height)
            assert " ".join(block.lines) == " ".join(copy[name].split())
            assert block.size >= round(reference.blocks[name].size * 0.8)
    if "cta" in layout.boxes:
        x0, y0, x1, y1 = layout.cta_label
        bx0, by0, bx1, by1 = layout.boxes["cta"]
        assert bx0 <= x0 < x1 <= bx1 and by0 <= y0 < y1 <= by1


def test_repaired_layouts_never_overlap_and_keep_the_margins():
    """Random wishes (uniform boxes) over many sizes and contents: every repaired layout
    keeps the constraints; the rest are rejected, never returned broken."""
    rng = random.Random(1)
    repaired = rejected = 0
    for _ in range(150):
        size, copy, products, logo, _segment = random_banner(rng)
        reference = compose.plan(size, tuple(copy.items()), products, logo, FONTS)
        condition = Condition.of(size, copy, len(products), logo is not None, None)
        for _ in range(3):
            proposal = {}
            for name in condition.elements():
                w, h = rng.uniform(0.05, 0.9), rng.uniform(0.05, 0.9)
                proposal[name] = (rng.uniform(0, 1), rng.uniform(0, 1), w, h)
            layout = repair(proposal, size, copy, list(products), logo, FONTS, reference)
            if layout is None:
                rejected += 1
                continue
            repaired += 1
            assert layout.mode == "vae"
            check_repaired(layout, size, reference, copy)
    assert repaired > 20 and rejected > 0


def test_repair_keeps_a_fixed_layout_nearly_as_it_is():
    """The fixed layout itself, as a wish, repairs to a valid layout close to it (boxes
    move by at most 10% of the banner: a little more air between text blocks, products
    lined up, edges snapped)."""
    rng = random.Random(4)
    checked = 0
    for _ in range(40):
        size, copy, products, logo, _ = random_banner(rng)
        reference = compose.plan(size, tuple(copy.items()), products, logo, FONTS)
        if not reference.boxes or reference.truncated:
            continue
        layout = repair(
            normalize(reference.boxes, size), size, copy, list(products), logo, FONTS, reference
        )
        assert layout is not None
        check_repaired(layout, size, reference, copy)
        limit = 0.1 * max(size)
        for name, box in reference.boxes.items():
            assert max(abs(a - b) for a, b in zip(layout.boxes[name], box, strict=True)) <= limit
        checked += 1
    assert checked >= 30


def test_unrepairable_samples_are_rejected():
    size = (1200, 628)
    copy = {"headline": "A long headline that needs room to breathe", "cta": "Shop now"}
    reference = compose.plan(size, tuple(copy.items()), (), None, FONTS)
    tiny = {"headline": (0.5, 0.5, 0.01, 0.01), "cta": (0.5, 0.8, 0.2, 0.1)}
    assert repair(tiny, size, copy, [], None, FONTS, reference) is None
    missing = {"headline": (0.3, 0.3, 0.5, 0.2)}  # no box for the call to action
    assert repair(missing, size, copy, [], None, FONTS, reference) is None


# ---------------------------------------------------------------------------------------
# The composer with and without the model


@pytest.mark.django_db
def test_composer_uses_fixed_layouts_without_a_model(models_dir):
    size, copy = (1200, 628), {"headline": "Fresh picks", "body": "New in", "cta": "Shop"}
    banner = compose.compose_banner(background(size), size, copy, [], compose.BrandStyle())
    reference = compose.plan(size, tuple(copy.items()), (), None, FONTS)
    assert banner.report["layout_source"] == "fixed" and banner.report["layout_model"] is None
    assert banner.boxes == reference.boxes
    assert banner.record["source"] == "fixed" and banner.record["size"] == [1200, 628]


@pytest.mark.django_db
def test_composer_samples_from_the_active_model_and_repairs(trained):
    rng = random.Random(11)
    style = compose.BrandStyle()
    product = Image.new("RGB", (400, 300), (90, 40, 40))
    used = 0
    for index in range(24):
        size, copy, products, _logo, _ = random_banner(rng)
        pictures = [product] * len(products)
        banner = compose.compose_banner(
            background(size), size, copy, pictures, style, segment=f"seg-{index % 3}"
        )
        assert banner.ok, banner.report
        again = compose.compose_banner(
            background(size), size, copy, pictures, style, segment=f"seg-{index % 3}"
        )
        assert again.boxes == banner.boxes  # seeded: the same banner, the same layout
        if banner.report["layout_source"] == "vae":
            used += 1
            assert banner.report["layout_model"] == trained.version
            assert banner.record["model"] == trained.version
            assert banner.record["boxes"] == {n: list(b) for n, b in banner.boxes.items()}
    assert used >= 12


@pytest.mark.django_db
def test_compose_many_samples_in_one_batch_with_the_same_layouts(trained):
    style = compose.BrandStyle()
    jobs = [
        compose.BannerJob(
            background(size),
            size,
            {"headline": f"Offer number {i}", "body": "Everything for the garden", "cta": "Go"},
            segment="gardeners",
        )
        for i, size in enumerate([(1200, 628), (300, 250), (1080, 1080), (750, 1000)])
    ]
    many = compose.compose_many(jobs, workers=1, widths=[])
    forked = compose.compose_many(jobs, workers=2, widths=[])  # workers never sample
    assert [m.boxes for m in forked] == [m.boxes for m in many]
    for job, made in zip(jobs, many, strict=True):
        single = compose.compose_banner(
            job.background, job.size, job.copy, [], style, segment="gardeners"
        )
        assert made.boxes == single.boxes
        assert made.record["source"] == single.record["source"]
    assert any(made.record["source"] == "vae" for made in many)


@pytest.mark.django_db
def test_layouts_off_keeps_the_fixed_layouts(trained, aigc):
    aigc(LAYOUT={**SMALL, "ENABLED": False})
    runtime.reset()
    size, copy = (1080, 1080), {"headline": "Quiet mornings", "cta": "Read"}
    banner = compose.compose_banner(background(size), size, copy, [], compose.BrandStyle())
    assert banner.report["layout_source"] == "fixed"


@pytest.mark.django_db
def test_corrupt_model_files_fall_back_and_are_reported_once(trained, caplog):
    Path(trained.path, "model.safetensors").write_bytes(b"\x00garbage")
    runtime.reset()
    size, copy = (1200, 628), {"headline": "Still works", "cta": "Shop"}
    with caplog.at_level(logging.ERROR, logger="aigc_django.generation"):
        first = compose.compose_banner(background(size), size, copy, [], compose.BrandStyle())
        runtime._state["checked"] = None  # the cache expires: no second report
        second = compose.compose_banner(background(size), size, copy, [], compose.BrandStyle())
    for banner in (first, second):
        assert banner.report["layout_source"] == "fixed" and banner.ok
        assert banner.report["layout_note"] == "the layout model cannot be loaded"
    errors = [r for r in caplog.records if "layout model" in r.getMessage()]
    assert len(errors) == 1 and f"v{trained.version}" in errors[0].getMessage()
    assert trained.path in runtime.status()["errors"]


# ---------------------------------------------------------------------------------------
# Too few layouts, the command and the task


@pytest.mark.django_db
def test_too_few_layouts_is_a_clear_error_and_the_previous_model_stays(models_dir, aigc):
    previous = train_layout_model(device="cpu")
    aigc(LAYOUT={**SMALL, "SYNTHETIC": 0, "MIN_LAYOUTS": 10})
    with pytest.raises(TooFewLayouts, match="Only 0 layouts to train on"):
        train_layout_model(device="cpu")
    with pytest.raises(CommandError, match="at least 10 are needed"):
        call_command("aigc_train", "layout", "--no-progress", stdout=StringIO())
    assert list(ModelArtifact.objects.filter(kind="layout")) == [previous]
    assert previous.active
    assert sorted(p.name for p in (models_dir / "layout").iterdir()) == ["v1"]


@pytest.mark.django_db
def test_aigc_train_layout_command(models_dir):
    out = StringIO()
    call_command(
        "aigc_train", "layout", "--epochs", "1", "--device", "cpu", "--no-progress", stdout=out
    )
    artifact = ModelArtifact.objects.get(kind="layout", active=True)
    text = out.getvalue()
    assert f"Trained layout model v{artifact.version}" in text
    assert "layouts (" in text and "from the composer" in text
    assert "now the active layout model" in text
    assert artifact.metrics["epochs"] == 1


@pytest.mark.django_db
def test_train_layout_model_task(models_dir):
    from aigc_django.tasks import task_routes
    from aigc_django.tasks import train_layout_model as task

    result = task.apply(kwargs={"epochs": 1}).get()
    artifact = ModelArtifact.objects.get(kind="layout", active=True)
    assert result == {"version": artifact.version, "metrics": artifact.metrics}
    assert task_routes()["aigc_django.train_layout_model"] == {"queue": "aigc_gpu"}


# ---------------------------------------------------------------------------------------
# Variants as training data


def make_variant(slot, segment, status, clicks=0, impressions=0, layout=None) -> Variant:
    record = {
        "size": [1200, 628],
        "boxes": {"headline": [60, 60, 600, 140], "cta": [60, 500, 260, 560]},
        "source": "fixed",
        "content": {"headline": 30, "body": 0, "cta": 8},
    }
    return Variant.objects.create(
        slot=slot,
        segment=segment,
        status=status,
        clicks=clicks,
        impressions=impressions,
        layout={"1200x628": record} if layout is None else layout,
    )


@pytest.mark.django_db
def test_approved_and_clicked_variants_are_training_layouts_weighted_by_click_through():
    slot = Slot.objects.create(key="hero", name="Hero", sizes=[[1200, 628]])
    segment = Segment.objects.create(key="runners", name="Runners")
    plain = make_variant(slot, segment, Variant.Status.APPROVED)
    make_variant(slot, segment, Variant.Status.APPROVED, clicks=1, impressions=100)
    make_variant(slot, segment, Variant.Status.APPROVED, clicks=9, impressions=100)
    make_variant(slot, segment, Variant.Status.ARCHIVED, clicks=2, impressions=100)
    make_variant(slot, segment, Variant.Status.REJECTED, clicks=5, impressions=100)
    make_variant(slot, segment, Variant.Status.PENDING)  # neither approved nor clicked
    make_variant(slot, segment, Variant.Status.APPROVED, layout={})  # no layout recorded
    examples, banners = data.variant_layouts()
    assert banners == 4 and len(examples) == 4
    weights = sorted(e.weight for e in examples)
    # The shop's mean click-through is 17 / 400 (every variant shown, rejected ones too);
    # each layout weighs 2 * (1 + its click-through / the mean).
    mean = 17 / 400
    expected = [2.0, *(2.0 * (1 + ctr / mean) for ctr in (0.01, 0.02, 0.09))]
    assert weights == pytest.approx(expected)
    example = examples[0]
    assert example.source == "variant"
    assert example.condition.segment == segment_bucket("runners")
    assert set(example.boxes) == {"headline", "cta"}
    assert example.condition.headline == 30 and example.condition.products == 0
    assert plain.layout["1200x628"]["boxes"]["headline"] == [60, 60, 600, 140]


@pytest.mark.django_db
def test_training_counts_the_variants_layouts(models_dir, aigc):
    slot = Slot.objects.create(key="hero", name="Hero", sizes=[[1200, 628]])
    segment = Segment.objects.create(key="runners", name="Runners")
    for _ in range(3):
        make_variant(slot, segment, Variant.Status.APPROVED, clicks=1, impressions=10)
    aigc(LAYOUT={**SMALL, "SYNTHETIC": 0, "MIN_LAYOUTS": 3})
    artifact = train_layout_model(device="cpu")
    assert artifact.metrics["variant_layouts"] == 3 and artifact.metrics["composer_layouts"] == 0
    assert artifact.metrics["variant_banners"] == 3


def dummy_shop(aigc, settings, tmp_path, sizes) -> tuple[Slot, Segment]:
    from tests.shopapp.models import Category
    from tests.shopapp.models import Product as ShopProduct

    settings.MEDIA_ROOT = str(tmp_path / "media")
    aigc(
        COPY_BACKENDS={
            "default": {"BACKEND": "aigc_django.generation.backends.dummy.DummyCopyBackend"}
        },
        IMAGE_BACKENDS={
            "default": {"BACKEND": "aigc_django.generation.backends.dummy.DummyImageBackend"}
        },
    )
    backends.reset()
    shoes = Category.objects.create(slug="running-shoes", name="Running shoes")
    ShopProduct.objects.create(sku="S1", name="Trail Runner", price=Decimal("80"), category=shoes)
    segment = Segment.objects.create(
        key="runners", name="Runners", top_categories=[["running-shoes", 1]], top_items=["S1"]
    )
    slot = Slot.objects.create(key="hero", name="Hero", kind=Slot.Kind.BANNER, sizes=sizes)
    return slot, segment


@pytest.mark.django_db
def test_generated_variants_record_their_layouts(aigc, settings, tmp_path, models_dir):
    slot, segment = dummy_shop(aigc, settings, tmp_path, [[600, 200], [300, 250]])
    try:
        (variant,) = service.generate_for(slot, segment, 1)
    finally:
        backends.reset()
    assert set(variant.layout) == {"600x200", "300x250"}
    for label, record in variant.layout.items():
        assert record["size"] == [int(v) for v in label.split("x")]
        assert record["source"] == "fixed" and "headline" in record["boxes"]
        assert record["content"]["segment"] == segment_bucket("runners")
    variant.status = Variant.Status.APPROVED
    variant.save()
    examples, banners = data.variant_layouts()
    assert banners == 1 and len(examples) == 2


@pytest.mark.django_db
def test_generation_lays_banners_out_with_the_active_model(aigc, settings, tmp_path, trained):
    sizes = [[1200, 628], [1080, 1080], [750, 1000]]
    slot, segment = dummy_shop(aigc, settings, tmp_path, sizes)
    try:
        variants = service.generate_for(slot, segment, 3)
    finally:
        backends.reset()
    records = [record for v in variants for record in v.layout.values()]
    assert len(records) == 9
    used = [r for r in records if r["source"] == "vae"]
    assert len(used) >= 5 and all(r["model"] == trained.version for r in used)
    for variant in variants:
        assert not any(f["code"] == "layout" for f in variant.safety["flags"])
        for label, entry in variant.renditions.items():
            assert entry["layout"]["layout_source"] == variant.layout[label]["source"]


def test_composer_layout_variations_keep_the_constraints():
    rng = random.Random(2)
    for _ in range(60):
        size, copy, products, logo, _ = random_banner(rng)
        layout = compose.plan(size, tuple(copy.items()), products, logo, FONTS)
        if not layout.boxes:
            continue
        found = data.variations(layout, size)
        assert found[0] == layout.boxes
        for boxes in found:
            assert not compose.overlaps(boxes)
            assert not compose.outside_margin(boxes, size, layout.margin)
            assert {n: (b[2] - b[0], b[3] - b[1]) for n, b in boxes.items()} == {
                n: (b[2] - b[0], b[3] - b[1]) for n, b in layout.boxes.items()
            }
    assert set(ELEMENTS) >= {"logo", "headline", "body", "cta", "product_0"}


# ---------------------------------------------------------------------------------------
# PosterLayout metrics on hand-made layouts


def test_validity_counts_elements_under_a_thousandth_of_the_canvas():
    layouts = [
        [(metrics.TEXT, (0.1, 0.1, 0.5, 0.3)), (metrics.LOGO, (0.0, 0.0, 0.02, 0.02))],
        [(metrics.PRODUCT, (0.9, 0.9, 1.4, 1.4))],  # 0.01 of it inside the canvas: valid
    ]
    assert metrics.validity(layouts) == pytest.approx(2 / 3)
    assert metrics.valid_only(layouts)[0] == [(metrics.TEXT, (0.1, 0.1, 0.5, 0.3))]


def test_overlap_is_the_mean_pairwise_iou_over_elements_without_underlays():
    a, b = (0.0, 0.0, 0.5, 0.5), (0.25, 0.25, 0.75, 0.75)
    assert metrics.iou(a, b) == pytest.approx(0.0625 / 0.4375)
    layout = [(metrics.TEXT, a), (metrics.PRODUCT, b), (metrics.UNDERLAY, (0, 0, 1, 1))]
    apart = [(metrics.TEXT, (0.0, 0.0, 0.2, 0.2)), (metrics.TEXT, (0.5, 0.5, 0.7, 0.7))]
    assert metrics.overlap([layout]) == pytest.approx((0.0625 / 0.4375) / 2)
    assert metrics.overlap([layout, apart]) == pytest.approx((0.0625 / 0.4375) / 4)


def test_alignment_follows_the_posterlayout_script():
    shared_left = [(metrics.TEXT, (0.1, 0.1, 0.3, 0.2)), (metrics.TEXT, (0.1, 0.5, 0.6, 0.6))]
    assert metrics.alignment([shared_left]) == 0.0
    apart = [(metrics.TEXT, (0.1, 0.1, 0.2, 0.2)), (metrics.LOGO, (0.4, 0.5, 0.7, 0.9))]
    # Smallest difference: the left edges, 0.3; g = -log10(0.7), counted once per element.
    assert metrics.alignment([apart]) == pytest.approx(2 * -math.log10(0.7))
    single = [(metrics.TEXT, (0.0, 0.0, 1.0, 1.0))]  # one element: no pair, counts 0
    assert metrics.alignment([apart, shared_left, single]) == pytest.approx(
        2 * -math.log10(0.7) / 3
    )
    assert metrics.element_alignment([apart]) == pytest.approx(-math.log10(0.7))


def test_underlay_measures_what_lies_on_the_decorations():
    button, label = (0.1, 0.8, 0.4, 0.9), (0.15, 0.82, 0.35, 0.88)
    on = [(metrics.UNDERLAY, button), (metrics.TEXT, label)]
    half = [(metrics.UNDERLAY, (0.0, 0.0, 0.2, 0.2)), (metrics.TEXT, (0.1, 0.0, 0.3, 0.2))]
    assert metrics.underlay([on]) == (1.0, 1.0)
    assert metrics.underlay([on, half]) == (pytest.approx(0.75), pytest.approx(0.5))
    assert metrics.underlay([[(metrics.TEXT, label)]]) == (0.0, 0.0)


def test_composer_layouts_as_metric_elements():
    size = (1200, 628)
    layout = compose.plan(size, (("headline", "Hi there"), ("cta", "Shop")), (), None, FONTS)
    elements = metrics.elements_of(layout.boxes, size, layout.cta_label)
    classes = sorted(c for c, _ in elements)
    assert classes == [metrics.TEXT, metrics.TEXT, metrics.UNDERLAY]
    scores = metrics.graphic_metrics([elements])
    assert scores["validity"] == 1.0 and scores["overlap"] == 0.0
    assert scores["underlay"] == 1.0 and scores["underlay_strict"] == 1.0


@pytest.mark.parametrize(
    ("layout", "name"),
    [
        ({"ENABLED": "yes"}, "ENABLED"),
        ({"CANDIDATES": 0}, "CANDIDATES"),
        ({"MIN_LAYOUTS": 1.5}, "MIN_LAYOUTS"),
        ({"EPOCHS": True}, "EPOCHS"),
        ({"SYNTHETIC": -1}, "SYNTHETIC"),
    ],
)
def test_e020_layout_settings(aigc, layout, name):
    from aigc_django.checks import check_layout

    assert check_layout() == []
    aigc(LAYOUT=layout)
    messages = check_layout()
    assert [m.id for m in messages] == ["aigc_django.E020"]
    assert f"['{name}']" in messages[0].msg


@pytest.mark.gpu
@pytest.mark.django_db
def test_training_on_cuda_gives_a_model_the_cpu_samples_from(models_dir, aigc):
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    aigc(PROFILES={"DEVICE": "auto"})
    artifact = train_layout_model(seed=0)  # "auto" picks CUDA
    assert artifact.metrics["device"].startswith("cuda")
    sampler = runtime.active_sampler()
    assert sampler is not None and sampler.version == artifact.version
    condition = Condition.of((1200, 628), {"headline": "On the GPU"}, 1, False, None)
    (boxes,) = sampler.propose([condition], [1], 1)[0]
    assert set(boxes) == {"headline", "product_0"}
