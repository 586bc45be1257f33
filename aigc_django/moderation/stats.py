"""The dashboard's figures: coverage per (slot, segment), click-through with credible
intervals, and the generation queue. Each function runs a fixed number of queries, however
many slots, segments, variants or jobs there are.

Credible intervals
------------------
A variant's click-through rate gets a uniform Beta(1, 1) prior, so after ``clicks`` of
``impressions`` its posterior is Beta(1 + clicks, 1 + impressions - clicks). The 95% interval
is the 2.5% and 97.5% quantiles of that posterior, found by inverting the regularized
incomplete beta function I_x(a, b) (continued fraction, as in Numerical Recipes 6.4) with a
safeguarded Newton iteration (bisection whenever a Newton step leaves the bracket). The math
is plain Python (``math.lgamma``); no scipy. Quantiles are accurate to about 1e-9.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from django.db.models import Count, Q

from aigc_django.models import GenerationJob, Segment, Slot, Variant

# Continued-fraction and root-finding limits.
_EPSILON = 1e-14
_TINY = 1e-300
_MAX_TERMS = 100_000
_MAX_STEPS = 200


def _log_beta(a: float, b: float) -> float:
    return math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b)


def _beta_fraction(a: float, b: float, x: float) -> float:
    """The continued fraction of I_x(a, b) (modified Lentz); converges for x < (a+1)/(a+b+2)."""
    total = a + b
    c = 1.0
    d = 1.0 - total * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > _TINY else _TINY)
    result = d
    for m in range(1, _MAX_TERMS + 1):
        m2 = 2 * m
        for numerator in (
            m * (b - m) * x / ((a - 1.0 + m2) * (a + m2)),
            -(a + m) * (total + m) * x / ((a + m2) * (a + 1.0 + m2)),
        ):
            d = 1.0 + numerator * d
            d = 1.0 / (d if abs(d) > _TINY else _TINY)
            c = 1.0 + numerator / c
            c = c if abs(c) > _TINY else _TINY
            step = c * d
            result *= step
        if abs(step - 1.0) < _EPSILON:
            return result
    raise ArithmeticError(f"incomplete beta did not converge for a={a}, b={b}, x={x}")


def beta_cdf(x: float, a: float, b: float) -> float:
    """The regularized incomplete beta function I_x(a, b): P(X <= x) for X ~ Beta(a, b)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    front = math.exp(a * math.log(x) + b * math.log1p(-x) - _log_beta(a, b))
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _beta_fraction(a, b, x) / a
    return 1.0 - front * _beta_fraction(b, a, 1.0 - x) / b


def beta_pdf(x: float, a: float, b: float) -> float:
    """The density of Beta(a, b) at ``x`` (a, b >= 1)."""
    if x <= 0.0 or x >= 1.0:
        return 0.0
    return math.exp((a - 1.0) * math.log(x) + (b - 1.0) * math.log1p(-x) - _log_beta(a, b))


def beta_quantile(p: float, a: float, b: float) -> float:
    """The ``p`` quantile of Beta(a, b) for a, b >= 1: the x with I_x(a, b) = p."""
    if not 0.0 <= p <= 1.0:
        raise ValueError("p must lie in [0, 1]")
    if a < 1.0 or b < 1.0:
        raise ValueError("a and b must be at least 1")
    if p == 0.0:
        return 0.0
    if p == 1.0:
        return 1.0
    low, high = 0.0, 1.0
    x = a / (a + b)
    for _ in range(_MAX_STEPS):
        error = beta_cdf(x, a, b) - p
        if error == 0.0:
            return x
        if error < 0.0:
            low = x
        else:
            high = x
        density = beta_pdf(x, a, b)
        candidate = x - error / density if density > 0.0 else -1.0
        if not low < candidate < high:
            candidate = (low + high) / 2.0
        if abs(candidate - x) < 1e-12 * max(x, 1e-300) or high - low < 1e-15:
            return candidate
        x = candidate
    return x


@dataclass(frozen=True)
class CredibleInterval:
    """The posterior mean and central credible interval of a click-through rate."""

    mean: float
    low: float
    high: float


def click_through_interval(clicks: int, impressions: int, level: float = 0.95) -> CredibleInterval:
    """The central ``level`` interval of Beta(1 + clicks, 1 + impressions - clicks).

    Clicks above impressions (counters updated out of order) are treated as impressions.
    """
    impressions = max(0, int(impressions))
    clicks = min(max(0, int(clicks)), impressions)
    a = 1.0 + clicks
    b = 1.0 + impressions - clicks
    tail = (1.0 - level) / 2.0
    return CredibleInterval(
        mean=a / (a + b), low=beta_quantile(tail, a, b), high=beta_quantile(1.0 - tail, a, b)
    )


# Coverage -----------------------------------------------------------------------------------


@dataclass
class Cell:
    """One (slot, segment) cell of the coverage matrix."""

    slot: Slot
    segment: Segment
    approved: int = 0
    pending: int = 0
    queued: int = 0  # variants that queued or running jobs have still to make

    @property
    def wanted(self) -> int:
        return self.slot.variants_per_segment

    @property
    def coverage(self) -> int:
        """What ``service.coverage`` counts: approved, pending and still to come."""
        return self.approved + self.pending + self.queued

    @property
    def missing(self) -> int:
        """Variants a new job would have to make (0 when the cell is covered)."""
        return max(0, self.wanted - self.coverage)

    @property
    def state(self) -> str:
        """ "ok" (enough approved), "waiting" (enough on the way) or "gap" (too few)."""
        if self.approved >= self.wanted:
            return "ok"
        return "gap" if self.missing else "waiting"


@dataclass
class CoverageMatrix:
    """Active slots by active segments."""

    slots: list[Slot]
    segments: list[Segment]
    rows: list[tuple[Slot, list[Cell]]] = field(default_factory=list)

    @property
    def gaps(self) -> int:
        return sum(1 for _, cells in self.rows for cell in cells if cell.state == "gap")

    def cell(self, slot_key: str, segment_key: str) -> Cell:
        for slot, cells in self.rows:
            if slot.key == slot_key:
                for cell in cells:
                    if cell.segment.key == segment_key:
                        return cell
        raise KeyError((slot_key, segment_key))


def coverage_matrix() -> CoverageMatrix:
    """Approved, pending and queued counts for every active (slot, segment): four queries."""
    slots = list(Slot.objects.filter(active=True).order_by("key"))
    segments = list(Segment.objects.filter(active=True).order_by("kind", "-size", "key"))
    counts: dict[tuple[int, int], dict[str, int]] = {}
    variant_rows = (
        Variant.objects.filter(
            slot__active=True,
            segment__active=True,
            status__in=[Variant.Status.APPROVED, Variant.Status.PENDING],
        )
        .values("slot_id", "segment_id", "status")
        .annotate(number=Count("id"))
        .order_by()
    )
    for row in variant_rows:
        counts.setdefault((row["slot_id"], row["segment_id"]), {})[row["status"]] = row["number"]
    queued: dict[tuple[int, int], int] = {}
    job_rows = (
        GenerationJob.objects.filter(
            status__in=[GenerationJob.Status.QUEUED, GenerationJob.Status.RUNNING]
        )
        .values("id", "slot_id", "segment_id", "count")
        .annotate(made=Count("variants"))
        .order_by()
    )
    for row in job_rows:
        cell_key = (row["slot_id"], row["segment_id"])
        queued[cell_key] = queued.get(cell_key, 0) + max(0, row["count"] - row["made"])
    matrix = CoverageMatrix(slots, segments)
    for slot in slots:
        cells = []
        for segment in segments:
            found = counts.get((slot.pk, segment.pk), {})
            cells.append(
                Cell(
                    slot,
                    segment,
                    approved=found.get(Variant.Status.APPROVED, 0),
                    pending=found.get(Variant.Status.PENDING, 0),
                    queued=queued.get((slot.pk, segment.pk), 0),
                )
            )
        matrix.rows.append((slot, cells))
    return matrix


# Click-through ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ClickThrough:
    """An approved variant's counters and its click-through interval."""

    variant: Variant
    impressions: int
    clicks: int
    interval: CredibleInterval

    @property
    def rate(self) -> float | None:
        """Observed clicks per impression; None before the first impression."""
        return self.clicks / self.impressions if self.impressions else None

    @property
    def label(self) -> str:
        variant = self.variant
        return f"{variant.slot.key} · {variant.segment.key} · #{variant.pk}"


def click_through(limit: int = 100) -> tuple[list[ClickThrough], int]:
    """Approved variants (at most ``limit``, by slot, segment, most impressions) and how many
    approved variants there are in all: two queries."""
    approved = Variant.objects.filter(
        status=Variant.Status.APPROVED, slot__active=True, segment__active=True
    )
    total = approved.count()
    variants = (
        approved.select_related("slot", "segment")
        .only(
            "id",
            "copy",
            "impressions",
            "clicks",
            "slot__key",
            "slot__name",
            "segment__key",
            "segment__name",
        )
        .order_by("slot__key", "segment__key", "-impressions", "id")[:limit]
    )
    rows = [
        ClickThrough(
            variant,
            variant.impressions,
            min(variant.clicks, variant.impressions),
            click_through_interval(variant.clicks, variant.impressions),
        )
        for variant in variants
    ]
    return rows, total


# Queue --------------------------------------------------------------------------------------

QUEUE_STATUSES = (
    GenerationJob.Status.QUEUED,
    GenerationJob.Status.RUNNING,
    GenerationJob.Status.FAILED,
)


def generation_queue(limit: int = 50) -> tuple[list[GenerationJob], dict[str, int]]:
    """Queued, running and failed jobs (newest first, at most ``limit``, each with ``made``,
    its variant count) and the number of jobs per status: two queries."""
    jobs = list(
        GenerationJob.objects.filter(status__in=QUEUE_STATUSES)
        .select_related("slot", "segment")
        .only(
            "id",
            "count",
            "status",
            "progress",
            "attempts",
            "error",
            "created_at",
            "slot__key",
            "slot__name",
            "segment__key",
            "segment__name",
        )
        .annotate(made=Count("variants"))
        .order_by("-created_at", "-id")[:limit]
    )
    totals = {status.value: 0 for status in GenerationJob.Status}
    for row in GenerationJob.objects.values("status").annotate(number=Count("id")).order_by():
        totals[row["status"]] = row["number"]
    return jobs, totals


def approved_and_pending(queryset):
    """``queryset`` of slots annotated with ``approved`` and ``pending`` variant counts."""
    return queryset.annotate(
        approved=Count("variants", filter=Q(variants__status=Variant.Status.APPROVED)),
        pending=Count("variants", filter=Q(variants__status=Variant.Status.PENDING)),
    )
