"""The generation service: briefs from segments, jobs for missing coverage, variants from jobs.

- ``build_brief(slot, segment)`` holds segment-level facts only, never a visitor's own data.
- ``plan_generation()`` creates a ``GenerationJob`` for every active (slot, segment) cell that
  has fewer approved, pending or queued variants than the slot wants, and dispatches it.
- ``run_job(job_id)`` makes the job's variants. It is idempotent: every variant has a
  position in its job (unique per job), finished positions are never made again, so a job
  that is delivered twice, or re-run after its worker died, ends with exactly ``count``
  variants. Each variant is committed as soon as it is made, so a dead worker loses at most
  the batch it was working on.
- ``generate_for(slot, segment, count)`` runs a new job in the calling process.

Tasks in ``aigc_django.tasks`` are thin wrappers around these functions.
"""

from __future__ import annotations

import colorsys
import hashlib
import logging
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import IntegrityError, transaction
from django.db.models import Count
from django.utils import timezone
from PIL import Image, ImageOps

from aigc_django.catalog import CatalogItem, get_catalog
from aigc_django.conf import aigc_settings
from aigc_django.generation.backends import copy_backend, image_backend
from aigc_django.generation.backends.base import (
    Backend,
    CopyDraft,
    GeneratedImage,
    TransientBackendError,
    is_out_of_memory,
)
from aigc_django.generation.briefs import Brief, Product, category_name
from aigc_django.generation.safety import check_copy
from aigc_django.models import GenerationJob, Segment, Slot, Variant

logger = logging.getLogger("aigc_django.generation")

Progress = Callable[[int, int], None]
DEFAULT_FIELDS = {"headline": 60, "body": 160, "cta": 24}
PRODUCTS_PER_BRIEF = 6
PRODUCTS_PER_BANNER = 2


class JobFailed(Exception):
    """A job that cannot succeed (bad slot, model missing, ...); retrying will not help."""


def segment_palette(segment: Segment) -> list[str]:
    """Two colours of the segment's own (from its key) after the brand's colours."""
    brand = [c for c in aigc_settings.BRAND.get("COLORS") or [] if isinstance(c, str)]
    digest = hashlib.sha256(segment.key.encode()).digest()
    hue = digest[0] / 255
    own = []
    for lightness, saturation in ((0.35, 0.55), (0.85, 0.45)):
        r, g, b = colorsys.hls_to_rgb(hue, lightness, saturation)
        own.append(f"#{round(r * 255):02x}{round(g * 255):02x}{round(b * 255):02x}")
    return brand + own


# The order copy fields read in; others follow alphabetically. (PostgreSQL's jsonb keeps
# no key order, so the slot's own order cannot be relied on.)
FIELD_ORDER = ("eyebrow", "headline", "subheadline", "title", "body", "text", "cta")


def slot_fields(slot: Slot) -> dict[str, int]:
    """The slot's copy fields and limits, in reading order (headline, body, cta, others)."""
    fields = slot.copy_fields or DEFAULT_FIELDS
    rank = {name: index for index, name in enumerate(FIELD_ORDER)}
    names = sorted((str(name) for name in fields), key=lambda n: (rank.get(n, len(rank)), n))
    return {name: int(fields[name]) for name in names}


def slot_sizes(slot: Slot) -> list[tuple[int, int]]:
    if slot.kind != Slot.Kind.BANNER:
        return []
    sizes = slot.sizes or aigc_settings.GENERATION["DEFAULT_SIZES"]
    return [(int(w), int(h)) for w, h in sizes]


def product_from_item(item: CatalogItem) -> Product:
    """A catalog item as a brief carries it."""
    return Product(
        key=item.key,
        title=item.title,
        category=item.category,
        category_name=category_name(item.category),
        price=item.price,
        description=item.description[:500],
        image_url=item.image_url,
    )


def build_brief(slot: Slot, segment: Segment, seed: int = 0) -> Brief:
    """The brief of one (slot, segment) cell: the segment's top categories and products."""
    categories = [
        (str(entry[0]), category_name(str(entry[0])))
        for entry in (segment.top_categories or [])
        if entry
    ]
    products: list[Product] = []
    catalog = get_catalog()
    if catalog is not None:
        keys = [str(k) for k in (segment.top_items or [])][:PRODUCTS_PER_BRIEF]
        found = {item.key: item for item in catalog.items(keys)} if keys else {}
        if len(found) < PRODUCTS_PER_BRIEF and categories:
            # Fill up with products of the segment's top categories.
            queryset = catalog.queryset().filter(
                **{f"{catalog.fields['category']}__in": [key for key, _ in categories]}
            )[: PRODUCTS_PER_BRIEF * 2]
            for obj in queryset:
                item = catalog.as_item(obj)
                found.setdefault(item.key, item)
        if not found:
            # A segment with no history (like "everyone" on a new shop): the catalog's first.
            for obj in catalog.queryset()[:PRODUCTS_PER_BRIEF]:
                item = catalog.as_item(obj)
                found[item.key] = item
        ordered = [found[k] for k in keys if k in found] + [
            item for key, item in found.items() if key not in keys
        ]
        products = [product_from_item(item) for item in ordered[:PRODUCTS_PER_BRIEF]]
        if not categories:
            categories = list(dict.fromkeys((p.category, p.category_name) for p in products))
    brand = aigc_settings.BRAND
    return Brief(
        slot=slot.key,
        segment=segment.key,
        segment_name=segment.name,
        fields=slot_fields(slot),
        categories=categories[:5],
        products=products,
        slot_brief=slot.brief,
        brand_name=brand.get("NAME") or "",
        brand_voice=brand.get("VOICE") or "",
        palette=segment_palette(segment),
        seed=seed,
    )


def variant_seed(job: GenerationJob, position: int) -> int:
    """The seed of a job's variant at ``position``: the same on every attempt."""
    digest = hashlib.sha256(f"{job.idempotency_key}:{position}".encode()).digest()
    return int.from_bytes(digest[:4], "big")


# Planning -----------------------------------------------------------------------------------


def coverage(slot: Slot, segment: Segment) -> int:
    """Variants that count towards the cell: approved and pending ones, and queued jobs."""
    have = Variant.objects.filter(
        slot=slot,
        segment=segment,
        status__in=[Variant.Status.APPROVED, Variant.Status.PENDING],
    ).count()
    waiting = GenerationJob.objects.filter(
        slot=slot,
        segment=segment,
        status__in=[GenerationJob.Status.QUEUED, GenerationJob.Status.RUNNING],
    ).annotate(made=Count("variants"))
    return have + sum(max(0, job.count - job.made) for job in waiting)


def create_job(
    slot: Slot,
    segment: Segment,
    count: int,
    *,
    key: str | None = None,
    spec: dict | None = None,
) -> GenerationJob | None:
    """A queued job; None when a job with the same idempotency key exists already."""
    if count < 1:
        raise ValueError("a job must ask for at least one variant")
    if key is None:
        rounds = GenerationJob.objects.filter(slot=slot, segment=segment).count()
        key = f"{slot.pk}:{segment.pk}:{rounds}"
    try:
        with transaction.atomic():
            return GenerationJob.objects.create(
                slot=slot,
                segment=segment,
                count=count,
                idempotency_key=key,
                spec=spec or {"copy_backend": "default", "image_backend": "default"},
            )
    except IntegrityError:
        return None


def plan_generation(
    slots: Iterable[Slot] | None = None,
    segments: Iterable[Segment] | None = None,
    *,
    dispatch: bool = True,
) -> list[GenerationJob]:
    """Jobs for every active (slot, segment) cell that lacks coverage; queued when dispatch."""
    slots = list(slots if slots is not None else Slot.objects.filter(active=True))
    segments = list(segments if segments is not None else Segment.objects.filter(active=True))
    jobs = []
    for slot in slots:
        for segment in segments:
            missing = slot.variants_per_segment - coverage(slot, segment)
            if missing > 0:
                job = create_job(slot, segment, missing)
                if job is not None:
                    jobs.append(job)
    if dispatch:
        for job in jobs:
            enqueue(job)
    return jobs


# How the error of a job the broker refused begins (the job admin counts those apart).
UNSENT = "Could not send the job to the queue"


def enqueue(job: GenerationJob) -> None:
    """Send the job to the generation queue once the current transaction commits."""
    from aigc_django.tasks import generate_variants

    options = aigc_settings.GENERATION

    def send() -> None:
        from kombu.exceptions import KombuError

        try:
            result = generate_variants.apply_async(
                args=[job.pk],
                queue=options["QUEUE"],
                soft_time_limit=options["SOFT_TIME_LIMIT"],
                time_limit=options["TIME_LIMIT"],
            )
        except (KombuError, OSError) as exc:
            # The broker is down: the job is marked failed with the reason (not left queued
            # as if it were on its way), and the page that queued it does not fail.
            logger.warning("Could not send job %s to the queue: %s", job.pk, exc)
            mark_failed(
                job.pk,
                f"{UNSENT} (is the Celery broker down?): "
                f"{type(exc).__name__}: {exc}. Retry it once the broker is back.",
            )
            return
        if result.id:
            GenerationJob.objects.filter(pk=job.pk, celery_task_id="").update(
                celery_task_id=result.id
            )

    transaction.on_commit(send)


# Running ------------------------------------------------------------------------------------


@dataclass
class Made:
    """One variant's parts before it is stored."""

    position: int
    brief: Brief
    draft: CopyDraft
    background: GeneratedImage | None


def run_job(job_id: int, progress: Progress | None = None) -> GenerationJob:
    """Make the variants a job still lacks. Safe to call again for the same job."""
    job = GenerationJob.objects.select_related("slot", "segment").get(pk=job_id)
    if job.status == GenerationJob.Status.SUCCEEDED:
        return job
    GenerationJob.objects.filter(pk=job.pk).update(
        status=GenerationJob.Status.RUNNING, attempts=job.attempts + 1, error=""
    )
    done = set(job.variants.values_list("position", flat=True))
    todo = [p for p in range(job.count) if p not in done]
    timings: dict[str, float] = dict(job.timings or {})
    batch_size = max(1, int(aigc_settings.GENERATION["BATCH_SIZE"]))
    brief = build_brief(job.slot, job.segment)
    started = time.perf_counter()
    try:
        while todo:
            batch = todo[:batch_size]
            try:
                made = make_batch(job, brief, batch, timings)
            except Exception as exc:
                if is_out_of_memory(exc) and batch_size > 1:
                    batch_size = max(1, batch_size // 2)
                    logger.warning(
                        "Job %s ran out of memory; batch size now %s", job.pk, batch_size
                    )
                    _free_memory()
                    continue
                raise
            for item in made:
                store_variant(job, item, timings)
            todo = todo[len(batch) :]
            done_count = job.count - len(todo)
            GenerationJob.objects.filter(pk=job.pk).update(
                progress=done_count / job.count, timings=timings
            )
            if progress:
                progress(done_count, job.count)
    except TransientBackendError as exc:
        GenerationJob.objects.filter(pk=job.pk).update(
            status=GenerationJob.Status.QUEUED, error=f"{type(exc).__name__}: {exc}"
        )
        raise
    except Exception as exc:
        mark_failed(job.pk, f"{type(exc).__name__}: {exc}")
        raise
    timings["total"] = timings.get("total", 0.0) + time.perf_counter() - started
    made_count = job.variants.count()
    GenerationJob.objects.filter(pk=job.pk).update(
        status=GenerationJob.Status.SUCCEEDED,
        progress=1.0,
        timings={k: round(v, 4) for k, v in timings.items()},
        finished_at=timezone.now(),
        error="",
    )
    logger.info("Job %s made %s variants", job.pk, made_count)
    job.refresh_from_db()
    return job


def mark_failed(job_id: int, error: str) -> None:
    GenerationJob.objects.filter(pk=job_id).update(
        status=GenerationJob.Status.FAILED, error=error[:2000], finished_at=timezone.now()
    )


def make_batch(
    job: GenerationJob, brief: Brief, positions: list[int], timings: dict[str, float]
) -> list[Made]:
    """Copy and backgrounds for ``positions`` of the job, each backend called once."""
    spec = job.spec or {}
    briefs = [brief.with_seed(variant_seed(job, p)) for p in positions]
    start = time.perf_counter()
    alias = spec.get("copy_backend", "default")
    writer = copy_backend(alias)
    with _loading(writer, "copy", alias):
        drafts = writer.generate(briefs)
    timings["copy"] = timings.get("copy", 0.0) + time.perf_counter() - start
    backgrounds: list[GeneratedImage | None] = [None] * len(briefs)
    sizes = slot_sizes(job.slot)
    if sizes:
        # One background per variant at the slot's largest size, cropped for the others.
        largest = max(sizes, key=lambda s: s[0] * s[1])
        start = time.perf_counter()
        alias = spec.get("image_backend", "default")
        painter = image_backend(alias)
        with _loading(painter, "image", alias):
            backgrounds = list(painter.generate(briefs, largest))
        timings["image"] = timings.get("image", 0.0) + time.perf_counter() - start
    return [
        Made(position, b, draft, background)
        for position, b, draft, background in zip(
            positions, briefs, drafts, backgrounds, strict=True
        )
    ]


@contextmanager
def _loading(backend: Backend, kind: str, alias: str) -> Iterator[None]:
    """Turn a failure to load a backend's model (a missing or corrupt model directory, a
    missing extra) into :class:`JobFailed` naming the backend, for the job's error. Errors
    once the model is loaded, out-of-memory and transient errors pass unchanged (they are
    halved, retried or reported as they are)."""
    try:
        yield
    except (TransientBackendError, JobFailed):
        raise
    except Exception as exc:
        if getattr(backend, "_loaded", True) or is_out_of_memory(exc):
            raise
        where = getattr(backend, "path", None)
        raise JobFailed(
            f"the {kind} backend {alias!r} ({backend.name or type(backend).__name__}) "
            f"could not load its model{f' from {where}' if where else ''}: "
            f"{type(exc).__name__}: {exc}"
        ) from exc


def featured_products(brief: Brief, draft: CopyDraft) -> list[Product]:
    """The products a banner shows: the one the copy names first, then the next best."""
    by_key = {p.key: p for p in brief.products}
    first = by_key.get(str(draft.notes.get("product", "")))
    ordered = ([first] if first else []) + [p for p in brief.products if p is not first]
    return ordered[:PRODUCTS_PER_BANNER]


@dataclass
class Rendered:
    """A variant's banners at every size of its slot, saved in storage."""

    renditions: dict[str, dict]
    image_name: str
    alt_text: str
    layout_flags: list[dict]
    # Per size label: where each element went (compose.Banner.record), for Variant.layout.
    layouts: dict[str, dict] | None = None


def render_banners(
    slot: Slot,
    folder: str,
    fields: dict[str, str],
    background: Image.Image,
    products: list[Product],
    segment: str | None = None,
) -> Rendered:
    """Compose and save the banners of ``fields`` on ``background`` at each of the slot's sizes."""
    from aigc_django.generation import compose, images

    style = compose.BrandStyle.from_settings()
    product_images = [img for p in products if (img := images.product_image(p.image_url))]
    options = aigc_settings.GENERATION
    renditions: dict[str, dict] = {}
    layout_flags: list[dict] = []
    layouts: dict[str, dict] = {}
    image_name = ""
    for index, size in enumerate(slot_sizes(slot)):
        fitted = ImageOps.fit(background, size, Image.Resampling.BICUBIC)
        banner = compose.compose_banner(
            fitted, size, fields, product_images, style, segment=segment
        )
        label = f"{size[0]}x{size[1]}"
        layouts[label] = banner.record
        if not banner.ok:
            layout_flags.append({"size": label, **banner.report})
        files = []
        for rendition in images.renditions(
            banner.image,
            list(options["RENDITION_WIDTHS"]),
            options["IMAGE_FORMAT"],
            options["FALLBACK_FORMAT"],
            int(options["QUALITY"]),
        ):
            files.append(
                {
                    "name": save_file(f"{folder}/{label}/{rendition.name}", rendition.content),
                    "width": rendition.width,
                    "height": rendition.height,
                    "format": rendition.format,
                }
            )
        renditions[label] = {
            "width": size[0],
            "height": size[1],
            "files": files,
            "layout": banner.report,
        }
        if index == 0:
            image_name = files[0]["name"]
    return Rendered(renditions, image_name, compose.alt_text(fields)[:250], layout_flags, layouts)


def safety_report(fields: dict[str, str], brief: Brief, layout_flags: list[dict]) -> dict:
    """The copy checks and the banners' layout checks as one report."""
    safety = check_copy(fields, brief).as_dict()
    if layout_flags:
        safety["ok"] = False
        safety["flags"].extend(
            {"code": "layout", "field": flag["size"], "message": _layout_message(flag)}
            for flag in layout_flags
        )
    return safety


def store_variant(job: GenerationJob, made: Made, timings: dict[str, float]) -> Variant | None:
    """Compose, check and save one variant; None when its position exists already."""
    slot = job.slot
    products = featured_products(made.brief, made.draft)
    rendered = Rendered({}, "", "", [])
    background_name = ""
    if made.background is not None:
        start = time.perf_counter()
        folder = f"aigc/variants/job-{job.pk}/{made.position}"
        # Kept so that an editor's change of copy can be drawn again on the same background.
        background_name = save_file(f"{folder}/background.png", _png(made.background.image))
        rendered = render_banners(
            slot, folder, made.draft.fields, made.background.image, products, job.segment.key
        )
        timings["compose"] = timings.get("compose", 0.0) + time.perf_counter() - start
    provenance = {
        "copy": made.draft.provenance.as_dict(),
        "copy_notes": _jsonable(made.draft.notes),
        "image": made.background.provenance.as_dict() if made.background else None,
        "background": background_name,
        "job": job.pk,
        "position": made.position,
        "products": [p.key for p in products],
    }
    try:
        with transaction.atomic():
            return Variant.objects.create(
                slot=slot,
                segment=job.segment,
                job=job,
                position=made.position,
                copy=made.draft.fields,
                image=rendered.image_name,
                renditions=rendered.renditions,
                layout=rendered.layouts or {},
                alt_text=rendered.alt_text,
                safety=safety_report(made.draft.fields, made.brief, rendered.layout_flags),
                provenance=provenance,
            )
    except IntegrityError:
        logger.info("Job %s position %s was made by another delivery", job.pk, made.position)
        return None


def rerender_variant(variant_id: int) -> Variant:
    """Draw a variant's banners again with its current copy, and check it again.

    Used after an editor changes the copy: the same background and products, new files
    (under a new folder, so caches and browsers never show the old text), a fresh safety
    report. The status is left to the caller (an edited variant still needs approval).
    """
    variant = Variant.objects.select_related("slot", "segment").get(pk=variant_id)
    brief = build_brief(variant.slot, variant.segment)
    rendered = Rendered({}, variant.image.name or "", variant.alt_text, [])
    background_name = (variant.provenance or {}).get("background") or ""
    if background_name and slot_sizes(variant.slot):
        from aigc_django.generation import images

        with default_storage.open(background_name) as handle:
            background = images.open_image(handle.read())
        if background is None:
            raise JobFailed(
                f"the background {background_name!r} of variant {variant.pk} is unreadable"
            )
        catalog = get_catalog()
        keys = (variant.provenance or {}).get("products") or []
        by_key = {p.key: p for p in brief.products}
        products = [by_key[k] for k in keys if k in by_key]
        if catalog is not None and len(products) < len(keys):
            found = {item.key: item for item in catalog.items([k for k in keys if k not in by_key])}
            products = [
                by_key.get(k) or product_from_item(found[k])
                for k in keys
                if k in by_key or k in found
            ]
        folder = f"aigc/variants/variant-{variant.pk}/edit-{time.time_ns()}"
        rendered = render_banners(
            variant.slot, folder, variant.copy, background, products, variant.segment.key
        )
    old_files = [
        f["name"] for entry in (variant.renditions or {}).values() for f in entry.get("files", [])
    ]
    updated = Variant.objects.filter(pk=variant.pk, copy=variant.copy).update(
        image=rendered.image_name,
        renditions=rendered.renditions,
        **({"layout": rendered.layouts} if rendered.layouts is not None else {}),
        alt_text=rendered.alt_text,
        safety=safety_report(variant.copy, brief, rendered.layout_flags),
    )
    if updated and rendered.renditions:
        for name in old_files:
            if name not in {f["name"] for e in rendered.renditions.values() for f in e["files"]}:
                default_storage.delete(name)
    variant.refresh_from_db()
    return variant


def _png(image: Image.Image) -> bytes:
    from io import BytesIO

    buffer = BytesIO()
    image.save(buffer, "PNG", compress_level=1)
    return buffer.getvalue()


def _layout_message(report: dict) -> str:
    parts = []
    if report.get("overlaps"):
        parts.append(f"overlapping boxes {report['overlaps']}")
    if report.get("contrast_failures"):
        parts.append(f"low contrast {report['contrast_failures']}")
    if report.get("outside_margin"):
        parts.append(f"outside the safe margins {report['outside_margin']}")
    return "; ".join(parts) or "layout check failed"


def _jsonable(value: dict) -> dict:
    import json

    return json.loads(json.dumps(value, default=str))


def save_file(name: str, content: bytes) -> str:
    """Save under exactly ``name`` (a re-run replaces its own earlier file)."""
    if default_storage.exists(name):
        default_storage.delete(name)
    return default_storage.save(name, ContentFile(content))


def _free_memory() -> None:
    import gc

    gc.collect()
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except ImportError:
        pass


def generate_for(slot: Slot, segment: Segment, count: int) -> list[Variant]:
    """Make ``count`` pending variants for the cell now, in this process."""
    job = create_job(slot, segment, count)
    if job is None:  # a concurrent caller took the same round: take the next one
        job = create_job(slot, segment, count, key=f"{slot.pk}:{segment.pk}:{time.time_ns()}")
    job = run_job(job.pk)
    return list(job.variants.order_by("position"))
