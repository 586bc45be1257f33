"""The image GAN: training on the shop's images into versioned artifacts, saving and loading,
seeded and conditioned sampling at the composer's sizes, the gan image backend and its
fallback, too few images, corrupt files, the aigc_train command, the task and a job."""

from __future__ import annotations

import itertools
import random
from decimal import Decimal
from io import BytesIO, StringIO
from pathlib import Path

import numpy as np
import pytest
import torch
from django.core.exceptions import ImproperlyConfigured
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.core.management import CommandError, call_command
from PIL import Image, ImageDraw

from aigc_django.generation import backends, service
from aigc_django.generation.backends.gan_image import (
    GanImageBackend,
    brief_category,
    brief_palette,
    fit_sample,
)
from aigc_django.generation.briefs import Brief
from aigc_django.generation.gan import model as ganmodel
from aigc_django.generation.gan.data import (
    MIN_IMAGES,
    TooFewImages,
    collect_images,
    dominant_palette,
)
from aigc_django.generation.gan.train import train_gan_model
from aigc_django.models import GenerationJob, ModelArtifact, Segment, Slot, Variant
from tests.conftest import runners_and_slots
from tests.shopapp.models import Category
from tests.shopapp.models import Product as ShopProduct

pytestmark = pytest.mark.django_db

GAN = "aigc_django.generation.backends.gan_image.GanImageBackend"
DUMMY_COPY = "aigc_django.generation.backends.dummy.DummyCopyBackend"
COLOURS = {"running-shoes": (220, 60, 40), "kitchen": (40, 120, 200), "books": (60, 160, 80)}
COMPOSER_SIZES = [(1200, 628), (600, 200), (300, 250), (160, 600)]


def product_picture(colour: tuple[int, int, int], rng: random.Random) -> bytes:
    """A product photo like the example shop's: a gradient of the category's colour and a
    light shape."""
    image = Image.new("RGB", (96, 96), colour)
    draw = ImageDraw.Draw(image)
    for y in range(96):
        shade = tuple(int(c * (1 - y / 200)) for c in colour)
        draw.line([(0, y), (96, y)], fill=shade)
    x, y, r = rng.randint(25, 70), rng.randint(25, 60), rng.randint(12, 22)
    draw.ellipse((x - r, y - r, x + r, y + r), fill=(240, 240, 235))
    out = BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


def make_shop(per_category: int = 6) -> list[ShopProduct]:
    rng = random.Random(0)
    made = []
    for slug, colour in COLOURS.items():
        category = Category.objects.create(slug=slug, name=slug.title())
        for n in range(per_category):
            product = ShopProduct(
                sku=f"{slug[:3].upper()}-{n}",
                name=f"{slug} {n}",
                price=Decimal("10.00"),
                category=category,
            )
            product.image.save(f"{product.sku}.png", ContentFile(product_picture(colour, rng)))
            made.append(product)
    return made


@pytest.fixture(autouse=True)
def models_dir(aigc, settings, tmp_path) -> Path:
    settings.MEDIA_ROOT = str(tmp_path / "media")
    aigc(
        MODEL_DIR=str(tmp_path / "models"),
        COPY_BACKENDS={"default": {"BACKEND": DUMMY_COPY}},
        IMAGE_BACKENDS={"default": {"BACKEND": GAN, "OPTIONS": {"DEVICE": "cpu"}}},
        GENERATION={"BATCH_SIZE": 4, "RETRY_BACKOFF": 0},
        PROFILES={"DEVICE": "cpu"},
    )
    backends.reset()
    yield tmp_path / "models"
    backends.reset()


def train_small(**kwargs) -> ModelArtifact:
    """A tiny GAN that trains in about a second."""
    options = {"steps": 3, "batch_size": 4, "resolution": 32, "channels": 4, "device": "cpu"}
    return train_gan_model(**{**options, **kwargs})


def brief(seed: int = 0, **changes) -> Brief:
    values = {
        "slot": "home-hero",
        "segment": "runners",
        "segment_name": "Runners",
        "fields": {"headline": 40},
        "categories": [("running-shoes", "Running shoes")],
        "palette": ["#14532d", "#f59e0b", "#f8fafc", "#aa3355"],
        "seed": seed,
    }
    return Brief(**{**values, **changes})


def pixels(image: Image.Image) -> bytes:
    return image.tobytes()


# Training ------------------------------------------------------------------------------------


def test_training_makes_versioned_artifacts_with_a_report(models_dir):
    make_shop()
    threads = torch.get_num_threads()
    first = train_small()
    second = train_small(seed=1)
    assert torch.get_num_threads() == threads and second.metrics["threads"] == 1
    assert (first.kind, first.version, second.version) == ("gan", 1, 2)
    first.refresh_from_db()
    assert not first.active and second.active
    assert Path(second.path) == models_dir / "gan" / "v2"
    assert {p.name for p in Path(second.path).iterdir()} == set(ganmodel.FILES)
    m = second.metrics
    assert m["images"] == 18 and m["sources"] == {"product": 18}
    assert m["categories"] == ["books", "kitchen", "running-shoes"]
    assert m["steps"] == 3 and m["device"] == "cpu" and m["resolution"] == 32
    for key in ("d_loss", "g_loss", "seconds", "train_seconds", "images_per_second"):
        assert isinstance(m[key], float) and m[key] == m[key]  # a number, not NaN
    assert len(m["d_loss_curve"]) == 3 and m["config"]["categories"] == 4


def test_epochs_count_passes_over_the_images(models_dir):
    make_shop()
    artifact = train_small(steps=None, epochs=2)
    assert artifact.metrics["steps"] == 9  # 2 passes over 18 images in batches of 4


def test_approved_backgrounds_are_training_images_of_their_segments_category(models_dir):
    make_shop(per_category=2)
    segment = Segment.objects.create(key="cooks", name="Cooks", top_categories=[["kitchen", 0.9]])
    slot = Slot.objects.create(key="hero", name="Hero")
    name = default_storage.save(
        "aigc/variants/job-1/0/background.png",
        ContentFile(product_picture((200, 200, 20), random.Random(1))),
    )
    for status in (Variant.Status.APPROVED, Variant.Status.REJECTED):
        Variant.objects.create(
            slot=slot, segment=segment, status=status, provenance={"background": name}
        )
    found = collect_images()
    assert [(p.source, p.category) for p in found if p.source == "background"] == [
        ("background", "kitchen")
    ]
    assert sum(p.source == "product" for p in found) == 6


def test_dominant_palette_is_most_common_first():
    image = Image.new("RGB", (40, 40), (200, 30, 30))
    ImageDraw.Draw(image).rectangle((0, 0, 9, 39), fill=(20, 20, 220))
    palette = dominant_palette(image)
    assert len(palette) == 3
    assert palette[0] == (200, 30, 30) and (20, 20, 220) in palette


def test_too_few_images_is_a_clear_error_and_keeps_the_previous_model(models_dir):
    products = make_shop()
    artifact = train_small()
    for product in products[4:]:
        product.delete()
    with pytest.raises(TooFewImages, match=rf"at least {MIN_IMAGES} training images.*has 4"):
        train_small()
    with pytest.raises(CommandError, match="stays in service"):
        call_command("aigc_train", "gan", "--no-progress", stdout=StringIO())
    assert list(ModelArtifact.objects.filter(kind="gan").values_list("pk", "active")) == [
        (artifact.pk, True)
    ]
    assert [p.name for p in (models_dir / "gan").iterdir()] == ["v1"]


def test_bad_training_arguments():
    with pytest.raises(ValueError, match="epochs"):
        train_gan_model(epochs=0)
    with pytest.raises(ValueError, match="steps"):
        train_gan_model(steps=0)


# Model files ---------------------------------------------------------------------------------


def test_save_and_load_round_trip(tmp_path):
    torch.manual_seed(0)
    config = ganmodel.GanConfig(categories=3, resolution=32, channels=4)
    generator = ganmodel.Generator(config).eval()
    ganmodel.save(generator, ["a", "b"], tmp_path / "m", {"version": 7})
    loaded = ganmodel.load(tmp_path / "m")
    assert loaded.generator.config == config
    assert loaded.categories == ["a", "b"] and loaded.version == "7"
    assert (loaded.category_index("b"), loaded.category_index("zzz")) == (2, ganmodel.UNKNOWN)
    z, cats, pals = torch.randn(2, 64), torch.tensor([1, 2]), torch.rand(2, 3, 3)
    with torch.no_grad():
        assert torch.equal(generator(z, cats, pals), loaded.generator(z, cats, pals))


def test_unusable_model_directories_give_clear_errors(tmp_path):
    config = ganmodel.GanConfig(categories=2, resolution=32, channels=4)
    good = tmp_path / "good"
    ganmodel.save(ganmodel.Generator(config), ["a"], good, {"version": 1})
    with pytest.raises(ganmodel.GanModelMissing, match=r"does not exist.*aigc_train gan"):
        ganmodel.load(tmp_path / "nowhere")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ganmodel.GanModelMissing, match=r"missing config\.json, model\.safe"):
        ganmodel.load(empty)
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    (corrupt / "config.json").write_text((good / "config.json").read_text())
    (corrupt / "model.safetensors").write_bytes(b"\x00garbage" * 10)
    with pytest.raises(ganmodel.GanModelMissing, match="unreadable files"):
        ganmodel.load(corrupt)
    (corrupt / "model.safetensors").write_bytes((good / "model.safetensors").read_bytes())
    (corrupt / "config.json").write_text('{"model": {"categories": 5}, "categories": ["a"]}')
    with pytest.raises(ganmodel.GanModelMissing, match="category count"):
        ganmodel.load(corrupt)
    (corrupt / "config.json").write_text(
        '{"model": {"categories": 2, "resolution": 64}, "categories": ["a"]}'
    )
    with pytest.raises(ganmodel.GanModelMissing, match="weights do not fit"):
        ganmodel.load(corrupt)


# Sampling through the backend -----------------------------------------------------------------


def test_seeded_sampling_is_deterministic_and_independent_of_the_batch(models_dir):
    make_shop()
    train_small()
    backend = GanImageBackend("gan", {"DEVICE": "cpu"})
    briefs = [brief(seed=s) for s in (1, 2, 3)]
    first = backend.generate(briefs, (300, 250))
    again = GanImageBackend("gan", {"DEVICE": "cpu"}).generate(briefs, (300, 250))
    assert [pixels(g.image) for g in first] == [pixels(g.image) for g in again]
    alone = backend.generate([briefs[2]], (300, 250))[0]
    assert pixels(alone.image) == pixels(first[2].image)
    assert len({pixels(g.image) for g in first}) == 3
    provenance = first[0].provenance
    assert (provenance.backend, provenance.model, provenance.version) == ("gan", "gan", "1")
    assert first[0].notes["category"] == "running-shoes" and first[0].notes["category_known"]
    assert first[0].notes["native"] == 32


def test_outputs_at_the_composers_sizes(models_dir):
    make_shop()
    train_small()
    backend = GanImageBackend("gan", {"DEVICE": "cpu"})
    for size in COMPOSER_SIZES:
        (generated,) = backend.generate([brief(seed=5)], size)
        assert generated.image.size == size and generated.image.mode == "RGB"
        # Upsampled smoothly: neighbouring pixels differ little (no blocky 32x32 grid).
        gray = generated.image.convert("L")
        row = [gray.getpixel((x, size[1] // 2)) for x in range(size[0])]
        assert max(abs(a - b) for a, b in itertools.pairwise(row)) < 40


def test_conditioning_changes_the_output(models_dir):
    make_shop()
    artifact = train_small()
    loaded = ganmodel.load(artifact.path)
    palettes = torch.rand(1, 3, 3) * 2 - 1
    by_category = [ganmodel.sample(loaded, [9], [c], palettes) for c in range(4)]
    for a, b in itertools.pairwise(by_category):
        assert not torch.equal(a, b)
    other = ganmodel.sample(loaded, [9], [1], -palettes)
    assert not torch.equal(other, by_category[1])
    backend = GanImageBackend("gan", {"DEVICE": "cpu"})
    base = backend.generate([brief(seed=4)], (120, 60))[0]
    other_palette = backend.generate([brief(seed=4, palette=["#000000", "#111111"])], (120, 60))
    other_category = backend.generate([brief(seed=4, categories=[("books", "Books")])], (120, 60))
    assert pixels(base.image) != pixels(other_palette[0].image)
    assert pixels(base.image) != pixels(other_category[0].image)


def test_brief_palette_and_category_choice():
    chosen = brief_palette(brief(seed=3))
    assert len(chosen) == 3 and len(set(chosen)) == 3
    assert chosen == brief_palette(brief(seed=3))
    assert brief_palette(brief(palette=["#ff0000"])) == [(255, 0, 0)] * 3
    assert len(brief_palette(brief(palette=["nonsense"]))) == 3
    two = brief(categories=[("a", "A"), ("b", "B")])
    assert {brief_category(two.with_seed(s)) for s in range(4)} == {"a", "b"}
    assert brief_category(brief(categories=[])) == ""


def test_fit_sample_grain_is_seeded():
    sample = Image.new("RGB", (32, 32), (100, 120, 140))
    a = fit_sample(sample, (200, 100), 1.0, 0.02, seed=1)
    b = fit_sample(sample, (200, 100), 1.0, 0.02, seed=1)
    c = fit_sample(sample, (200, 100), 1.0, 0.02, seed=2)
    flat = fit_sample(sample, (200, 100), 1.0, 0.0, seed=1)
    assert pixels(a) == pixels(b) != pixels(c)
    assert flat.getcolors() == [(200 * 100, (100, 120, 140))]


@pytest.mark.parametrize(
    "options",
    [
        {"SMOOTHING": -1},
        {"SMOOTHING": "soft"},
        {"GRAIN": 0.5},
        {"BATCH_SIZE": 0},
        {"BATCH_SIZE": 2.5},
        {"FALLBACK": "yes"},
        {"DEVICE": 3},
        {"PATH": ""},
        {"SIZE": 64},
    ],
)
def test_bad_options_are_improperly_configured(options):
    with pytest.raises(ImproperlyConfigured, match=r"IMAGE_BACKENDS\['gan'\] OPTIONS"):
        GanImageBackend("gan", options)


# Missing and corrupt models ----------------------------------------------------------------------


def test_without_a_model_the_backend_draws_procedural_backgrounds_and_says_why(models_dir):
    backend = GanImageBackend("gan", {"DEVICE": "cpu"})
    (generated,) = backend.generate([brief(seed=1)], (300, 250))
    assert generated.image.size == (300, 250)
    assert generated.provenance.backend == "builtin"
    assert generated.notes["fallback"] == "builtin"
    assert "no active gan ModelArtifact" in generated.notes["gan_error"]
    assert "aigc_train gan" in generated.notes["gan_error"]
    # Once a model is trained, the same backend instance uses it.
    make_shop()
    train_small()
    (generated,) = backend.generate([brief(seed=1)], (300, 250))
    assert generated.provenance.backend == "gan" and "fallback" not in generated.notes


def test_without_fallback_a_missing_model_is_an_error(models_dir):
    backend = GanImageBackend("gan", {"DEVICE": "cpu", "FALLBACK": False})
    with pytest.raises(ganmodel.GanModelMissing, match="aigc_train gan"):
        backend.generate([brief()], (300, 250))


def corrupt(artifact: ModelArtifact) -> None:
    (Path(artifact.path) / ganmodel.WEIGHTS).write_bytes(b"not safetensors at all")


def test_corrupt_model_files_are_reported_and_generation_still_works(models_dir, shop_slots):
    make_shop()
    corrupt(train_small())
    (variant,) = service.generate_for(shop_slots["banner"], shop_slots["runners"], 1)
    assert variant.provenance["image"]["backend"] == "builtin"
    assert set(variant.renditions) == {"600x200", "300x250"}
    job = variant.job
    job.refresh_from_db()
    assert job.status == GenerationJob.Status.SUCCEEDED


def test_corrupt_model_without_fallback_fails_the_job_with_a_clear_error(
    aigc, models_dir, shop_slots
):
    aigc(IMAGE_BACKENDS={"default": {"BACKEND": GAN, "OPTIONS": {"FALLBACK": False}}})
    backends.reset()
    make_shop()
    artifact = train_small()
    corrupt(artifact)
    with pytest.raises(service.JobFailed):
        service.generate_for(shop_slots["banner"], shop_slots["runners"], 1)
    job = GenerationJob.objects.get()
    assert job.status == GenerationJob.Status.FAILED
    assert "image backend 'default' (gan) could not load its model" in job.error
    assert "unreadable files" in job.error and artifact.path in job.error


# The command, the task and a job ---------------------------------------------------------------


def test_aigc_train_gan_command(models_dir):
    make_shop()
    out = StringIO()
    call_command(
        "aigc_train", "gan", "--epochs", "1", "--device", "cpu", "--no-progress", stdout=out
    )
    artifact = ModelArtifact.objects.get(kind="gan", active=True)
    assert f"Trained image GAN v{artifact.version}" in out.getvalue()
    assert "18 images" in out.getvalue() and "images/s" in out.getvalue()
    assert artifact.metrics["steps"] == 2  # one pass over 18 images in batches of 16


def test_train_gan_model_task_and_its_route(models_dir):
    from aigc_django.tasks import task_routes
    from aigc_django.tasks import train_gan_model as task

    make_shop()
    result = task.apply(kwargs={"epochs": 1}).get()
    artifact = ModelArtifact.objects.get(kind="gan", active=True)
    assert result == {"version": artifact.version, "metrics": artifact.metrics}
    assert task_routes()["aigc_django.train_gan_model"] == {"queue": "aigc_gpu"}


@pytest.fixture
def shop_slots() -> dict:
    return runners_and_slots(["RUN-1", "RUN-2"])


def test_a_generation_job_with_the_gan_backend(models_dir, shop_slots):
    make_shop()
    artifact = train_small()
    variants = service.generate_for(shop_slots["banner"], shop_slots["runners"], 2)
    assert len(variants) == 2
    for variant in variants:
        image = variant.provenance["image"]
        assert (image["backend"], image["model"], image["version"]) == (
            "gan",
            "gan",
            str(artifact.version),
        )
        assert set(variant.renditions) == {"600x200", "300x250"}
        with default_storage.open(variant.provenance["background"]) as handle:
            background = Image.open(BytesIO(handle.read()))
            assert background.size == (600, 200)
    assert variants[0].provenance["background"] != variants[1].provenance["background"]


@pytest.mark.gpu
def test_trains_and_samples_on_cuda(models_dir):
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    make_shop()
    artifact = train_small(device="cuda", steps=20)
    assert artifact.metrics["device"].startswith("cuda")
    backend = GanImageBackend("gan", {"DEVICE": "cuda"})
    first = backend.generate([brief(seed=s) for s in (1, 2)], (600, 200))
    again = backend.generate([brief(seed=2)], (600, 200))
    assert backend.loaded.device.type == "cuda"
    assert first[0].image.size == (600, 200)
    # cuDNN may pick other kernels for another batch size: equal up to rounding.
    diff = np.abs(
        np.asarray(first[1].image, dtype=np.int16) - np.asarray(again[0].image, dtype=np.int16)
    )
    assert diff.max() <= 2
