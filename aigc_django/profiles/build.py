"""Profile rebuilds: events -> features -> factorization -> clustering -> segments.

``build_profiles()`` computes everything in memory first and writes segments, profiles and
model artifacts in one transaction at the end, so a rebuild that fails leaves the previous
segments in service. ``update_profiles(visitor_ids)`` is the cheap incremental path: it
recomputes a few visitors' features and places them in the existing segments.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import torch
from django.conf import settings
from django.db import transaction
from django.db.models import Exists, F, OuterRef, Q
from django.utils import timezone
from django.utils.text import slugify

from aigc_django.conf import aigc_settings
from aigc_django.models import Event, ModelArtifact, Profile, Segment, Visitor
from aigc_django.profiles import clustering, factorization, lookup
from aigc_django.profiles.features import (
    VisitorFeatures,
    build_features,
    interactions,
    iter_chunks,
    read_events,
)
from aigc_django.profiles.rules import assign_rule_segments
from aigc_django.tracking.ingest import LAST_SEEN_STEP

logger = logging.getLogger("aigc_django.profiles")

EVERYONE = "everyone"
Progress = Callable[[str, int, int], None]


@dataclass
class SegmentSummary:
    key: str
    name: str
    kind: str
    size: int
    top_categories: list[tuple[str, float]]
    is_new: bool = False


@dataclass
class BuildReport:
    visitors: int
    eligible: int
    events: int
    items: int
    segments: list[SegmentSummary] = field(default_factory=list)
    k: int = 0
    device: str = "cpu"
    timings: dict[str, float] = field(default_factory=dict)
    factorization_version: int | None = None


def torch_device() -> torch.device:
    """The device of ``PROFILES["DEVICE"]`` ("auto": CUDA when there is one)."""
    wanted = aigc_settings.PROFILES["DEVICE"]
    if wanted == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(wanted)


def model_dir() -> Path:
    """``AIGC["MODEL_DIR"]``, else ``aigc-models`` beside the project (BASE_DIR), never under
    MEDIA_ROOT, which web servers tend to publish."""
    configured = aigc_settings.MODEL_DIR
    if configured:
        return Path(configured)
    return Path(getattr(settings, "BASE_DIR", None) or Path.cwd()) / "aigc-models"


def ensure_everyone() -> Segment:
    segment, _ = Segment.objects.get_or_create(
        key=EVERYONE,
        defaults={
            "name": "Everyone",
            "kind": Segment.Kind.EVERYONE,
            "description": "Every visitor, and the fallback for visitors in no other segment.",
        },
    )
    return segment


def _unit_rows(x: torch.Tensor) -> torch.Tensor:
    return x / x.norm(dim=1, keepdim=True).clamp_min(1e-12)


def _aligned(centroid: dict[str, float] | None, categories: list[str]) -> torch.Tensor:
    centroid = centroid or {}
    return torch.tensor([float(centroid.get(c, 0.0)) for c in categories])


def describe(shares: dict[str, float]) -> tuple[str, str, list[tuple[str, float]]]:
    """A name, a description and the top categories from a segment's mean interest shares."""
    ranked = sorted(shares.items(), key=lambda kv: -kv[1])
    top = [(c, round(s, 3)) for c, s in ranked if s >= 0.1][:3] or ranked[:1]
    labels = [c.replace("-", " ").replace("_", " ") for c, _ in top]
    name = " & ".join(label.capitalize() for label in labels[:2]) or "Browsers"
    parts = ", ".join(
        f"{label} ({share:.0%})" for label, (_, share) in zip(labels, top, strict=True)
    )
    return name, f"Visitors most interested in {parts}.", top


def _unique_key(base: str, taken: set[str]) -> str:
    base = slugify(base)[:50] or "segment"
    key, n = base, 2
    while key in taken:
        key, n = f"{base}-{n}", n + 1
    taken.add(key)
    return key


def _progress(progress: Progress | None, stage: str, done: int, total: int) -> None:
    if progress is not None:
        progress(stage, done, total)


def build_profiles(now: datetime | None = None, progress: Progress | None = None) -> BuildReport:
    """Rebuild every profile and the learned segments from all stored events."""
    now = now or timezone.now()
    options = aigc_settings.PROFILES
    device = torch_device()
    timings: dict[str, float] = {}
    clock = time.perf_counter()

    def lap(stage: str) -> None:
        nonlocal clock
        timings[stage] = round(time.perf_counter() - clock, 3)
        clock = time.perf_counter()
        _progress(progress, stage, len(timings), 5)

    columns = read_events()
    features = build_features(columns, now)
    categories = features.category_keys
    lap("read events")

    users, items, weights = interactions(columns, now)
    popularity = torch.zeros(len(columns.items)).index_add_(0, items, weights)
    popular = torch.argsort(popularity, descending=True).tolist()
    fact = None
    if len(columns.items) >= 2 and len(users) > 0:
        fact = factorization.fit_als(
            users,
            items,
            weights,
            len(features),
            len(columns.items),
            factors=options["FACTORS"],
            regularization=options["ALS_REGULARIZATION"],
            alpha=options["ALS_ALPHA"],
            iterations=options["ALS_ITERATIONS"],
            seed=options["SEED"],
            device=device,
            compute_loss=False,
        )
    lap("factorization")

    eligible = (features.event_counts >= options["MIN_EVENTS"]) & (features.interests.sum(1) > 0)
    eligible_rows = eligible.nonzero().flatten()
    shares = features.shares()
    points = _unit_rows(shares[eligible_rows]).to(device)
    labels = torch.full((len(features),), -1, dtype=torch.int64)
    centroids = torch.zeros(0, len(categories))
    k = 0
    if len(eligible_rows) >= 2 * max(options["K_MIN"], 1) and len(categories) >= 2:
        k = options["SEGMENTS"] or clustering.choose_k(
            points,
            options["K_MIN"],
            min(options["K_MAX"], len(eligible_rows) - 1),
            seed=options["SEED"],
        )
        k = min(k, len(eligible_rows))
        result = clustering.kmeans(points, k, seed=options["SEED"])
        labels[eligible_rows] = result.labels.cpu()
        centroids = result.centroids.cpu()
    lap("clustering")

    rule_segments = list(Segment.objects.filter(kind=Segment.Kind.RULE, active=True))
    rule_winner = assign_rule_segments(
        rule_segments,
        features,
        now.timestamp(),
        on_error=lambda s, e: logger.warning("Rule segment %s skipped: %s", s.key, e),
    )
    lap("rules")

    report = BuildReport(
        visitors=len(features),
        eligible=len(eligible_rows),
        events=features.real_events,
        items=len(columns.items),
        k=k,
        device=str(device),
        timings=timings,
    )
    saved: Path | None = None
    try:
        with transaction.atomic():
            saved = _save_segments_and_profiles(
                report,
                features,
                fact,
                columns.items.keys,
                popular,
                labels,
                centroids,
                shares,
                k,
                rule_segments,
                rule_winner,
                now,
                progress,
            )
    except BaseException:
        if saved is not None:
            shutil.rmtree(saved, ignore_errors=True)
        raise
    lap("write")
    lookup.bump_version()
    return report


def _save_segments_and_profiles(
    report: BuildReport,
    features: VisitorFeatures,
    fact: factorization.Factorization | None,
    item_keys: list[str],
    popular: list[int],
    labels: torch.Tensor,
    centroids: torch.Tensor,
    shares: torch.Tensor,
    k: int,
    rule_segments: list[Segment],
    rule_winner: torch.Tensor,
    now: datetime,
    progress: Progress | None,
) -> Path | None:
    """The write half of a rebuild; runs inside its transaction. Returns the model directory
    written, so that a failed transaction can remove it."""
    options = aigc_settings.PROFILES
    categories = features.category_keys
    ensure_everyone()
    # One rebuild at a time: the second waits here for the first to commit.
    everyone = Segment.objects.select_for_update().get(key=EVERYONE)
    old_learned = list(Segment.objects.filter(kind=Segment.Kind.LEARNED).exclude(centroid=None))
    matched: list[int | None] = [None] * k
    if k and old_learned:
        old_matrix = torch.stack([_aligned(s.centroid, categories) for s in old_learned])
        matched = clustering.match_centroids(
            old_matrix, centroids, max_distance=options["MATCH_DISTANCE"]
        )
    taken = set(Segment.objects.values_list("key", flat=True))
    learned: list[Segment] = []
    for cluster in range(k):
        members = labels == cluster
        mean_shares = shares[members].mean(0) if members.any() else centroids[cluster]
        share_map = {c: float(v) for c, v in zip(categories, mean_shares, strict=True) if v > 0}
        name, description, top = describe(share_map)
        centroid = {
            c: round(float(v), 6)
            for c, v in zip(categories, centroids[cluster], strict=True)
            if v > 0
        }
        old_index = matched[cluster]
        if old_index is not None:
            segment = old_learned[old_index]
            is_new = False
        else:
            segment = Segment(key=_unique_key(name, taken), name=name, kind=Segment.Kind.LEARNED)
            is_new = True
        segment.description = description
        segment.centroid = centroid
        segment.top_categories = [[c, s] for c, s in top]
        segment.active = True
        segment.save()
        learned.append(segment)
        report.segments.append(
            SegmentSummary(segment.key, segment.name, segment.kind, 0, top, is_new)
        )
    if k:
        # Clusters that found no continuation retire (kept, with their content and
        # stats). With too little data to cluster at all, the learned segments stay.
        kept = {s.pk for s in learned}
        Segment.objects.filter(kind=Segment.Kind.LEARNED).exclude(pk__in=kept).update(
            active=False, size=0
        )
    else:
        Segment.objects.filter(kind=Segment.Kind.LEARNED).update(size=0)

    final = [
        _segment_of(row, rule_winner, rule_segments, labels, learned, everyone)
        for row in range(len(features))
    ]

    top_items = _top_items(fact, item_keys, final, len(features), options["TOP_ITEMS"])
    sizes: dict[int, int] = {}
    for segment in final:
        sizes[segment.pk] = sizes.get(segment.pk, 0) + 1
    for segment in [everyone, *rule_segments, *learned]:
        segment.size = len(features) if segment.pk == everyone.pk else sizes.get(segment.pk, 0)
        segment.top_items = top_items.get(segment.pk, top_items.get(None, []))
        Segment.objects.filter(pk=segment.pk).update(size=segment.size, top_items=segment.top_items)
    for summary, segment in zip(report.segments, learned, strict=True):
        summary.size = segment.size
    report.segments += [
        SegmentSummary(s.key, s.name, s.kind, s.size, [(c, v) for c, v in s.top_categories or []])
        for s in [*rule_segments, everyone]
    ]

    saved = None
    if fact is not None:
        report.factorization_version, saved = _save_factorization(fact, item_keys, report)
    _write_profiles(features, fact, final, item_keys, popular, now, progress)
    # Every visitor with events was just written with built_at=now; older rows belong to
    # visitors whose events are gone (purged or erased).
    Profile.objects.filter(built_at__lt=now).delete()
    return saved


def _top_items(
    fact: factorization.Factorization | None,
    item_keys: list[str],
    final: list[Segment],
    n_visitors: int,
    count: int,
) -> dict[int | None, list[str]]:
    """Top item keys per segment pk (and None: everyone) from the mean member factors."""
    if fact is None or not item_keys:
        return {}
    by_segment: dict[int | None, list[int]] = {None: list(range(n_visitors))}
    for row, segment in enumerate(final):
        by_segment.setdefault(segment.pk, []).append(row)
    user_factors = fact.user_factors.cpu()
    means = torch.stack([user_factors[rows].mean(0) for rows in by_segment.values()])
    best = factorization.top_items_for_vector(fact, means.to(fact.item_factors.device), k=count)
    return {
        pk: [item_keys[i] for i in row if i >= 0]
        for pk, row in zip(by_segment, best.cpu().tolist(), strict=True)
    }


KEEP_MODEL_VERSIONS = 3


def _save_factorization(
    fact: factorization.Factorization, item_keys: list[str], report: BuildReport
) -> tuple[int, Path]:
    """Save the item side of the model as the next version; return (version, directory).

    Visitors' own factors live in their profiles (where erasure reaches them), not in files.
    Only the newest KEEP_MODEL_VERSIONS directories are kept on disk.
    """
    version = (
        ModelArtifact.objects.filter(kind="factorization")
        .order_by("-version")
        .values_list("version", flat=True)
        .first()
        or 0
    ) + 1
    directory = model_dir() / "factorization" / f"v{version}"
    items_only = factorization.Factorization(
        fact.user_factors[:0].cpu(), fact.item_factors.cpu(), dict(fact.config)
    )
    factorization.save(items_only, directory)
    (directory / "items.json").write_text(json.dumps(item_keys))
    for old in ModelArtifact.objects.filter(
        kind="factorization", version__lte=version - KEEP_MODEL_VERSIONS
    ):
        transaction.on_commit(lambda path=old.path: shutil.rmtree(path, ignore_errors=True))
    ModelArtifact.objects.filter(kind="factorization").update(active=False)
    ModelArtifact.objects.create(
        kind="factorization",
        version=version,
        path=str(directory),
        metrics={
            "visitors": report.visitors,
            "items": report.items,
            "factors": int(fact.user_factors.shape[1]),
        },
    )
    return version, directory


def _write_profiles(
    features: VisitorFeatures,
    fact: factorization.Factorization | None,
    final: list[Segment],
    item_keys: list[str],
    popular: list[int],
    now: datetime,
    progress: Progress | None,
) -> None:
    recommended: torch.Tensor | None = None
    if fact is not None and item_keys:
        recommended = _recommendations(fact, popular, aigc_settings.PROFILES["TOP_ITEMS"])
    total = len(features)
    for start in range(0, total, 2000):
        stop = min(start + 2000, total)
        embeddings = fact.user_factors[start:stop].tolist() if fact is not None else None
        tops = recommended[start:stop].tolist() if recommended is not None else None
        profiles = [
            Profile(
                visitor_id=features.visitor_keys[start + i],
                embedding=[round(v, 5) for v in embeddings[i]] if embeddings is not None else None,
                top_items=[item_keys[j] for j in tops[i] if j >= 0] if tops is not None else [],
                segment=final[start + i],
                built_at=now,
                **fields,
            )
            for i, fields in enumerate(_feature_rows(features, start, stop))
        ]
        Profile.objects.bulk_create(
            profiles,
            update_conflicts=True,
            unique_fields=["visitor"],
            update_fields=[
                f.name for f in Profile._meta.concrete_fields if f.name not in ("id", "visitor")
            ],
        )
        _progress(progress, "write profiles", stop, total)


def _recommendations(
    fact: factorization.Factorization, popular: list[int], count: int
) -> torch.Tensor:
    """Each visitor's best items; the most popular for visitors with no item events (their
    factors are zero, so every item would score the same)."""
    rows = torch.arange(fact.user_factors.shape[0])
    count = min(count, fact.item_factors.shape[0])
    best = factorization.recommend(fact, rows, k=count).cpu()
    blank = fact.user_factors.abs().sum(1).cpu() == 0
    best[blank] = torch.tensor(popular[:count] + [-1] * (count - len(popular[:count])))
    return best


FEATURE_FIELDS = [
    "interests",
    "recency_days",
    "frequency",
    "monetary",
    "cart_open",
    "last_cart_at",
    "device",
    "referrer",
]


def _feature_rows(features: VisitorFeatures, start: int, stop: int) -> list[dict[str, Any]]:
    """The profile fields that come straight from the features of rows ``start:stop``.

    Each tensor slice becomes Python numbers in one ``tolist()`` rather than one tensor
    index per value and visitor (which was most of the time spent writing profiles).
    """
    categories = features.category_keys
    interests = features.interests[start:stop].tolist()
    recency = features.recency_days[start:stop].tolist()
    counts = features.event_counts[start:stop].tolist()
    money = features.monetary[start:stop].tolist()
    cart_open = features.cart_open[start:stop].tolist()
    last_cart = features.last_cart[start:stop].tolist()
    return [
        {
            "interests": {categories[c]: round(w, 4) for c, w in enumerate(weights) if w},
            "recency_days": round(recency[i], 3),
            "frequency": int(counts[i]),
            "monetary": round(money[i], 2),
            "cart_open": bool(cart_open[i]),
            "last_cart_at": _when(last_cart[i]),
            "device": features.device[start + i][:16],
            "referrer": features.referrer[start + i][:255],
        }
        for i, weights in enumerate(interests)
    ]


def _segment_of(
    row: int,
    rule_winner: torch.Tensor,
    rules: list[Segment],
    labels: torch.Tensor,
    learned: list[Segment],
    everyone: Segment,
) -> Segment:
    """Precedence: the winning rule segment, then the learned segment, then everyone."""
    if rule_winner[row] >= 0:
        return rules[int(rule_winner[row])]
    if labels[row] >= 0:
        return learned[int(labels[row])]
    return everyone


def _when(value: float) -> datetime | None:
    if value != value:  # nan
        return None
    return datetime.fromtimestamp(value, tz=timezone.get_current_timezone())


# ------------------------------------------------------------------------ incremental


def update_profiles(visitor_ids: Sequence[Any], now: datetime | None = None) -> int:
    """Recompute some visitors' profiles and place them in the current segments.

    Cheap: reads only these visitors' events. Interests, RFM figures, cart state and the
    segment change; embeddings and top items wait for the next full rebuild.
    """
    now = now or timezone.now()
    options = aigc_settings.PROFILES
    columns = read_events(visitor_ids)
    if not len(columns):
        return 0
    features = build_features(columns, now)
    everyone = ensure_everyone()
    learned = list(
        Segment.objects.filter(kind=Segment.Kind.LEARNED, active=True).exclude(centroid=None)
    )
    rules = list(Segment.objects.filter(kind=Segment.Kind.RULE, active=True))
    rule_winner = assign_rule_segments(rules, features, now.timestamp())
    labels = torch.full((len(features),), -1, dtype=torch.int64)
    eligible = (features.event_counts >= options["MIN_EVENTS"]) & (features.interests.sum(1) > 0)
    if learned and bool(eligible.any()):
        space = sorted({c for s in learned for c in s.centroid})
        centroids = torch.stack([_aligned(s.centroid, space) for s in learned])
        index = {c: i for i, c in enumerate(features.category_keys)}
        shares = features.shares()
        points = torch.zeros(len(features), len(space))
        for j, category in enumerate(space):
            if category in index:
                points[:, j] = shares[:, index[category]]
        # Visitors whose interests lie wholly outside the segments' categories stay out.
        rows = (eligible & (points.sum(1) > 0)).nonzero().flatten()
        if len(rows):
            nearest, _ = clustering.assign(_unit_rows(points[rows]), centroids)
            labels[rows] = nearest
    # Embedding and top items are left as they are: only a full rebuild refits them.
    profiles = [
        Profile(
            visitor_id=visitor,
            segment=_segment_of(row, rule_winner, rules, labels, learned, everyone),
            built_at=now,
            **fields,
        )
        for row, (visitor, fields) in enumerate(
            zip(features.visitor_keys, _feature_rows(features, 0, len(features)), strict=True)
        )
    ]
    Profile.objects.bulk_create(
        profiles,
        update_conflicts=True,
        unique_fields=["visitor"],
        update_fields=[*FEATURE_FIELDS, "segment", "built_at"],
    )
    lookup.forget(features.visitor_keys)
    return len(profiles)


# A visitor's last_seen can lag their newest event by up to LAST_SEEN_STEP (on PostgreSQL
# ingest rewrites the row only when it moves further), and buffered events reach the database
# a little after they happen (allowed as long again). Visitors last seen this long before
# their profile was built are refreshed again, so such events do not wait for the nightly
# rebuild.
REFRESH_OVERLAP = 2 * LAST_SEEN_STEP


def refresh_profiles(limit: int = 5000, chunk: int = 500) -> int:
    """Incrementally update visitors seen since their profile was built (or never built),
    with an overlap of REFRESH_OVERLAP."""
    built = F("profile__built_at") - REFRESH_OVERLAP
    stale = (
        Visitor.objects.filter(merged_into__isnull=True)
        .filter(Q(profile__isnull=True) | Q(last_seen__gt=built))
        .filter(Exists(Event.objects.filter(visitor=OuterRef("pk"))))
        .values_list("id", flat=True)[:limit]
    )
    ids = list(stale)
    return sum(update_profiles(part) for part in iter_chunks(ids, chunk))
