"""The generation service: briefs, safety, planning, idempotent jobs, batching, retries,
out-of-memory halving, stored banners, the aigc_generate command and the task."""

from __future__ import annotations

from decimal import Decimal
from io import BytesIO, StringIO

import pytest
from django.core.files.storage import default_storage
from django.core.management import CommandError, call_command
from PIL import Image

from aigc_django.generation import backends, service
from aigc_django.generation.backends import TransientBackendError
from aigc_django.generation.backends.dummy import DummyCopyBackend
from aigc_django.generation.briefs import Brief, Product
from aigc_django.generation.safety import check_copy
from aigc_django.models import GenerationJob, Segment, Slot, Variant
from aigc_django.tasks import generate_variants
from tests.conftest import DUMMY_COPY, runners_and_slots
from tests.shopapp.models import Category
from tests.shopapp.models import Product as ShopProduct

pytestmark = pytest.mark.django_db


DUMMY_GENERATION = {"BATCH_SIZE": 4, "RETRY_BACKOFF": 0}


@pytest.fixture(autouse=True)
def _dummy_backends(dummy_backends):
    """Every test here generates with the dummy backends (tests/conftest.py)."""


@pytest.fixture
def shop():
    shoes = Category.objects.create(slug="running-shoes", name="Running shoes")
    books = Category.objects.create(slug="books", name="Books")
    for i in range(4):
        ShopProduct.objects.create(
            sku=f"S{i}", name=f"Trail Runner {i}", price=Decimal(f"{80 + i}.90"), category=shoes
        )
    ShopProduct.objects.create(sku="B1", name="Novel", price=Decimal("12.50"), category=books)
    return runners_and_slots(["S2", "S1"], brief="Spring running season", copy_slot=True)


def copy_backend() -> DummyCopyBackend:
    return backends.copy_backend()  # type: ignore[return-value]


def test_brief_holds_segment_facts_only(shop):
    brief = service.build_brief(shop["banner"], shop["runners"], seed=5)
    assert brief.segment == "runners" and brief.slot == "home-hero"
    assert brief.categories == [("running-shoes", "Running shoes")]
    keys = [p.key for p in brief.products]
    assert keys[:2] == ["S2", "S1"]  # the segment's top items first
    assert set(keys) == {"S0", "S1", "S2", "S3"}  # filled up from its top categories
    assert brief.products[0].price == pytest.approx(82.90)
    assert brief.slot_brief == "Spring running season"
    assert brief.fields == {"headline": 50, "body": 120, "cta": 20}
    assert brief.hash == service.build_brief(shop["banner"], shop["runners"], seed=9).hash
    assert len(brief.palette) >= 2


def brief_for(**fields: int) -> Brief:
    product = Product("S1", "Trail Runner", "running-shoes", "Running shoes", 81.9)
    return Brief("s", "g", "G", fields or {"headline": 40}, [], [product])


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("Visit www.example.com today", "url"),
        ("See https://x.io/a", "url"),
        ("Mail jane.doe@example.org", "personal_data"),
        ("Call +1 (555) 123-4567", "personal_data"),
        ("Only $19.99 today", "price"),
        ("Now 79.90 EUR", "price"),
        ("Save 30% on runners", "discount"),
        ("Big summer sale", "discount"),
        ("Cheap stuff", "banned_word"),
        ("Act now!!!", "banned_pattern"),
        ("", "length"),
        ("x" * 41, "length"),
    ],
)
def test_safety_flags(aigc, text, code):
    aigc(BRAND={"BANNED_WORDS": ["cheap"], "BANNED_PATTERNS": [r"!{2,}"]})
    report = check_copy({"headline": text}, brief_for(headline=40))
    assert code in {flag.code for flag in report.flags}, report.flags
    assert not report.ok


def test_safety_passes_catalog_facts():
    report = check_copy({"headline": "Trail Runner for 81.90, in Running shoes"}, brief_for())
    assert report.ok, report.flags
    assert check_copy({"headline": "Trail Runner, now $81.90"}, brief_for()).ok


def test_plan_creates_jobs_for_missing_coverage_only(shop):
    jobs = service.plan_generation(dispatch=False)
    everyone = Segment.objects.get(key="everyone")
    cells = {(j.slot.key, j.segment.key): j.count for j in jobs}
    assert cells == {
        ("home-copy", "runners"): 3,
        ("home-copy", "everyone"): 3,
        ("home-hero", "runners"): 2,
        ("home-hero", "everyone"): 2,
    }
    assert service.plan_generation(dispatch=False) == []  # queued jobs count as coverage
    Variant.objects.create(
        slot=shop["copy"], segment=everyone, status=Variant.Status.APPROVED, copy={}
    )
    GenerationJob.objects.filter(slot=shop["copy"], segment=everyone).delete()
    (job,) = service.plan_generation(dispatch=False)
    assert (job.slot, job.segment, job.count) == (shop["copy"], everyone, 2)


def test_copy_job_makes_pending_variants_with_provenance_and_safety(shop):
    variants = service.generate_for(shop["copy"], shop["runners"], 3)
    assert len(variants) == 3
    assert [v.position for v in variants] == [0, 1, 2]
    for variant in variants:
        assert variant.status == Variant.Status.PENDING
        assert set(variant.copy) == {"headline", "cta"}
        assert len(variant.copy["headline"]) <= 50
        assert variant.provenance["copy"]["backend"] == "dummy"
        assert variant.provenance["copy"]["brief_hash"]
        assert "generate" in variant.provenance["copy"]["timings"]
        assert variant.safety["ok"] is True
        assert not variant.image
    job = variants[0].job
    assert job.status == GenerationJob.Status.SUCCEEDED and job.progress == 1.0
    assert job.attempts == 1 and job.finished_at is not None
    seeds = {v.provenance["copy"]["seed"] for v in variants}
    assert len(seeds) == 3  # each position its own seed


def test_backend_is_called_once_per_batch_and_loaded_once_per_process(shop, aigc):
    aigc(GENERATION={"BATCH_SIZE": 2})
    service.generate_for(shop["copy"], shop["runners"], 5)
    service.generate_for(shop["copy"], shop["runners"], 1)
    backend = copy_backend()
    assert backend.calls == 3 + 1  # batches of 2, 2, 1, then 1
    assert backend.loads == 1


def test_rerunning_a_job_makes_nothing_more(shop):
    job = service.create_job(shop["copy"], shop["runners"], 3)
    service.run_job(job.pk)
    service.run_job(job.pk)
    GenerationJob.objects.filter(pk=job.pk).update(status=GenerationJob.Status.RUNNING)
    service.run_job(job.pk)  # a re-delivered job whose first run was cut short
    assert Variant.objects.filter(job=job).count() == 3


def test_a_job_cut_short_finishes_only_the_missing_positions(shop):
    job = service.create_job(shop["copy"], shop["runners"], 4)
    brief = service.build_brief(job.slot, job.segment)
    for made in service.make_batch(job, brief, [0, 2], {}):
        service.store_variant(job, made, {})
    first = {v.position: v.pk for v in job.variants.all()}
    service.run_job(job.pk)
    positions = sorted(job.variants.values_list("position", flat=True))
    assert positions == [0, 1, 2, 3]
    assert {v.position: v.pk for v in job.variants.filter(position__in=[0, 2])} == first
    assert copy_backend().calls == 2  # positions 0 and 2, then 1 and 3


def test_same_job_same_copy(shop):
    job = service.create_job(shop["copy"], shop["runners"], 2)
    brief = service.build_brief(job.slot, job.segment)
    first = [m.draft.fields for m in service.make_batch(job, brief, [0, 1], {})]
    again = [m.draft.fields for m in service.make_batch(job, brief, [0, 1], {})]
    assert first == again


def test_duplicate_idempotency_key_makes_no_second_job(shop):
    assert service.create_job(shop["copy"], shop["runners"], 2, key="k1") is not None
    assert service.create_job(shop["copy"], shop["runners"], 2, key="k1") is None
    assert GenerationJob.objects.filter(idempotency_key="k1").count() == 1


def test_out_of_memory_halves_the_batch(shop, aigc):
    aigc(GENERATION={"BATCH_SIZE": 8})
    backend = copy_backend()
    original = backend._generate

    def small_memory(briefs):
        if len(briefs) > 2:
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return original(briefs)

    backend._generate = small_memory
    variants = service.generate_for(shop["copy"], shop["runners"], 5)
    assert len(variants) == 5
    assert variants[0].job.status == GenerationJob.Status.SUCCEEDED


def test_out_of_memory_at_batch_size_one_fails_the_job(shop, aigc):
    aigc(GENERATION={"BATCH_SIZE": 2})
    backend = copy_backend()

    def no_memory(briefs):
        raise MemoryError("out of memory")

    backend._generate = no_memory
    job = service.create_job(shop["copy"], shop["runners"], 2)
    with pytest.raises(MemoryError):
        service.run_job(job.pk)
    job.refresh_from_db()
    assert job.status == GenerationJob.Status.FAILED and "MemoryError" in job.error
    assert not job.variants.exists()


def test_task_retries_transient_errors_then_succeeds(shop, aigc):
    aigc(
        COPY_BACKENDS={"default": {"BACKEND": DUMMY_COPY, "OPTIONS": {"FAIL_TIMES": 2}}},
        GENERATION={"MAX_RETRIES": 3, "RETRY_BACKOFF": 0},
    )
    job = service.create_job(shop["copy"], shop["runners"], 2)
    generate_variants.apply(args=[job.pk])
    job.refresh_from_db()
    assert job.status == GenerationJob.Status.SUCCEEDED
    assert job.attempts == 3 and job.variants.count() == 2


def test_task_gives_up_after_max_retries(shop, aigc):
    aigc(
        COPY_BACKENDS={"default": {"BACKEND": DUMMY_COPY, "OPTIONS": {"FAIL_TIMES": 99}}},
        GENERATION={"MAX_RETRIES": 1, "RETRY_BACKOFF": 0},
    )
    job = service.create_job(shop["copy"], shop["runners"], 2)
    result = generate_variants.apply(args=[job.pk])
    assert isinstance(result.result, TransientBackendError)
    job.refresh_from_db()
    assert job.status == GenerationJob.Status.FAILED
    assert "gave up after 2 attempts" in job.error


def test_plan_dispatches_to_the_generation_queue(shop, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        jobs = service.plan_generation(segments=[shop["runners"]])
    assert len(jobs) == 2
    for job in jobs:
        job.refresh_from_db()
        assert job.status == GenerationJob.Status.SUCCEEDED  # eager Celery in tests
        assert job.variants.count() == job.slot.variants_per_segment


def test_banner_job_stores_renditions_for_every_size(shop):
    (variant,) = service.generate_for(shop["banner"], shop["runners"], 1)
    assert set(variant.renditions) == {"600x200", "300x250"}
    assert variant.image.name.endswith(".webp")
    for size, entry in variant.renditions.items():
        width = int(size.split("x")[0])
        formats = {f["format"] for f in entry["files"]}
        assert formats == {"WEBP", "JPEG"}
        for file in entry["files"]:
            with default_storage.open(file["name"]) as handle:
                image = Image.open(BytesIO(handle.read()))
                image.load()
            assert image.size == (file["width"], file["height"])
            assert image.size[0] <= width
        assert entry["layout"]["overlaps"] == []
    assert variant.alt_text
    assert variant.provenance["image"]["backend"] == "dummy"
    assert variant.provenance["products"][0] in {"S0", "S1", "S2", "S3"}


def test_flagged_copy_is_stored_with_its_reasons(shop, aigc):
    aigc(BRAND={"BANNED_WORDS": ["shop"]})  # the dummy's "Shop now" call to action
    variants = service.generate_for(shop["copy"], shop["runners"], 3)
    flagged = [v for v in variants if not v.safety["ok"]]
    for variant in flagged:
        assert variant.status == Variant.Status.PENDING
        assert {f["code"] for f in variant.safety["flags"]} == {"banned_word"}
    assert len(variants) == 3


def test_generate_command_plans_and_runs(shop):
    out = StringIO()
    call_command("aigc_generate", "--no-progress", stdout=out, stderr=StringIO())
    assert "Made 10 pending variants in 4 jobs." in out.getvalue()
    out = StringIO()
    call_command("aigc_generate", "--no-progress", stdout=out)
    assert "nothing to do" in out.getvalue()
    out = StringIO()
    call_command(
        "aigc_generate", "--slot", "home-copy", "--segment", "runners", "--count", "2",
        "--no-progress", stdout=out, stderr=StringIO(),
    )  # fmt: skip
    assert "Made 2 pending variants in 1 jobs." in out.getvalue()


def test_generate_command_rejects_unknown_slot(shop):
    with pytest.raises(CommandError, match="No active slot with key 'nope'"):
        call_command("aigc_generate", "--slot", "nope")
    with pytest.raises(CommandError, match="at least 1"):
        call_command("aigc_generate", "--count", "0")


@pytest.mark.parametrize(
    ("values", "field"),
    [
        ({"sizes": [[1200]]}, "sizes"),
        ({"sizes": [[10, 600]]}, "sizes"),
        ({"sizes": "1200x628"}, "sizes"),
        ({"kind": Slot.Kind.COPY, "sizes": [[300, 250]]}, "sizes"),
        ({"copy_fields": {"headline": 0}}, "copy_fields"),
        ({"copy_fields": {"head line": 40}}, "copy_fields"),
        ({"copy_fields": ["headline"]}, "copy_fields"),
    ],
)
def test_slot_validation_names_the_bad_field(values, field):
    from django.core.exceptions import ValidationError

    slot = Slot(key="s", name="S", **values)
    with pytest.raises(ValidationError) as caught:
        slot.full_clean()
    assert field in caught.value.message_dict


def test_a_valid_slot_passes_validation():
    Slot(key="s", name="S", sizes=[[1200, 628]], copy_fields={"headline": 40}).full_clean()


def test_rerender_draws_edited_copy_on_the_same_background(shop, aigc):
    aigc(BRAND={"BANNED_WORDS": ["miracle"]})
    (variant,) = service.generate_for(shop["banner"], shop["runners"], 1)
    old_files = [f["name"] for e in variant.renditions.values() for f in e["files"]]
    assert default_storage.exists(variant.provenance["background"])
    variant.copy = {**variant.copy, "headline": "A miracle for your feet"}
    variant.save(update_fields=["copy"])
    variant = service.rerender_variant(variant.pk)
    new_files = [f["name"] for e in variant.renditions.values() for f in e["files"]]
    assert set(variant.renditions) == {"600x200", "300x250"}
    assert not set(old_files) & set(new_files)
    assert all(default_storage.exists(name) for name in new_files)
    assert not any(default_storage.exists(name) for name in old_files)
    assert variant.alt_text.startswith("A miracle for your feet")
    assert [f["code"] for f in variant.safety["flags"]] == ["banned_word"]
    # The master file is the slot's first size (600x200), whatever order jsonb keeps.
    assert variant.image.name == variant.renditions["600x200"]["files"][0]["name"]


def test_rerender_of_a_copy_slot_checks_the_copy_again(shop):
    (variant,) = service.generate_for(shop["copy"], shop["runners"], 1)
    variant.copy = {**variant.copy, "headline": "Mail me at a@b.co"}
    variant.save(update_fields=["copy"])
    variant = service.rerender_variant(variant.pk)
    assert variant.safety["ok"] is False and variant.renditions == {}


def test_slot_fields_come_in_reading_order_whatever_the_database_keeps():
    slot = Slot(copy_fields={"cta": 20, "zeta": 5, "body": 100, "headline": 40, "alpha": 9})
    assert list(service.slot_fields(slot)) == ["headline", "body", "cta", "alpha", "zeta"]
