"""Impression, click and conversion counters: kept in the cache, flushed to the database.

A render must not write to the database, so :func:`record_impressions`,
:func:`record_click` and :func:`record_conversion` only increment cache keys. The keys are
split into one-minute buckets: ``aigc:fb:<kind>:<bucket>:<variant id>``, plus a marker
``aigc:fb:active:<bucket>`` that says the bucket holds something.

:func:`flush_counters` (the ``aigc_django.flush_feedback`` beat task, every minute) moves
every *closed* bucket (older than the current and the previous minute) to the ``Variant``
counters with ``F()`` updates, and in the same transaction writes an
:class:`~aigc_django.models.IngestBatch` row named after the bucket. Then it deletes the
bucket's keys. So each bucket is counted exactly once:

- Two flushers at once: the second one's insert of the same bucket row fails on the unique
  key (it waits for the first to commit), its transaction rolls back, it adds nothing.
- A flusher that dies before its commit leaves no row and all the keys: the next flusher
  moves the whole bucket.
- A flusher that dies after its commit, before deleting the keys: the next flusher finds the
  row, deletes the keys and adds nothing.

The trade-off: an increment that reaches a bucket after the bucket was flushed is lost.
Writers pick the bucket from their own clock just before the increment, and a bucket is
only flushed a full minute after it closed, so only a writer paused (or a clock off) by
more than a minute loses its count: at-most-once for such stragglers, exactly-once for the
rest. Counts also live only as long as the cache keeps them (``KEY_TIMEOUT``, two days, and
a cache that evicts keys under memory pressure loses them): use a cache that does not evict
(Redis with ``noeviction``) when exact counts matter.

When the cache is unreachable, impressions stay held in the process (see
:func:`record_impressions`) and go with its first write after the cache is back (or, at
exit, straight to the ``Variant`` counters); clicks and conversions, which are not counted
during a render, go straight to the ``Variant`` counters with ``F()`` updates. Nothing is
lost and nothing raises into a page.

:func:`pending_counts` reads the not-yet-flushed counts of the last few buckets in one
``get_many``, so the bandit sees clicks within seconds, not after the next flush. Between a
flusher's commit and its deletion of the keys a bucket is counted both in the database and
as pending; the bandit may see it twice for that moment, the stored counters never do.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import threading
import time
from collections.abc import Iterable

from django.core.cache import cache
from django.db import IntegrityError, transaction
from django.db.models import F

from aigc_django.models import IngestBatch, Variant

logger = logging.getLogger("aigc_django.delivery")

BUCKET_SECONDS = 60
# Buckets that pending_counts reads: the flusher leaves the current and previous minute,
# and a late beat may leave a few more.
PENDING_BUCKETS = 5
# How long counts wait in the cache for a flusher, and how far back a flusher looks.
KEY_TIMEOUT = 2 * 24 * 3600
LOOKBACK_BUCKETS = KEY_TIMEOUT // BUCKET_SECONDS
# Variants whose keys one get_many reads while flushing.
CHUNK_SIZE = 1000

IMPRESSION = "i"
CLICK = "c"
CONVERSION = "v"
KINDS = (IMPRESSION, CLICK, CONVERSION)
BATCH_KEY_PREFIX = "aigc-feedback:"


def current_bucket(now: float | None = None) -> int:
    """The bucket number of ``now`` (a Unix timestamp; the current time by default)."""
    return int((time.time() if now is None else now) // BUCKET_SECONDS)


def _counter_key(kind: str, bucket: int, variant_id: int) -> str:
    return f"aigc:fb:{kind}:{bucket}:{variant_id}"


def _active_key(bucket: int) -> str:
    return f"aigc:fb:active:{bucket}"


def _batch_key(bucket: int) -> str:
    return f"{BATCH_KEY_PREFIX}{bucket}"


def _increment(key: str, amount: int) -> bool:
    """Add ``amount`` to ``key``, creating it; safe when many processes race on one key.
    True when the key was missing (this call or a racing one created it)."""
    try:
        cache.incr(key, amount)
        return False
    except ValueError:
        # Missing: create it. If another process created it first, add() says so and the
        # increment then finds the key.
        if not cache.add(key, amount, KEY_TIMEOUT):
            cache.incr(key, amount)
        return True


def _write(kind: str, counts: dict[int, int], at: float | None = None) -> dict[int, int]:
    """Add ``counts`` to the bucket of ``at`` (now by default); return the counts the cache
    did not take (all of them, or those after the first failure, when it is unreachable)."""
    bucket = current_bucket(at)
    created = False
    pending = list(counts.items())
    try:
        while pending:
            variant_id, count = pending[0]
            created |= _increment(_counter_key(kind, bucket, variant_id), count)
            pending.pop(0)
        if created:
            # A counter key was new: mark the minute active so the flusher finds it. Marking
            # only then (not on every count) saves a cache call per impression.
            cache.add(_active_key(bucket), 1, KEY_TIMEOUT)
    except Exception as exc:
        logger.warning("Cache unreachable (%s); %d counts not written to it.", exc, len(pending))
        if created or len(pending) < len(counts):
            # Some keys of this bucket were written: mark it (if the cache is back).
            with contextlib.suppress(Exception):
                cache.add(_active_key(bucket), 1, KEY_TIMEOUT)
        return dict(pending)
    return {}


def _write_database(kind: str, counts: dict[int, int]) -> None:
    """Add counts straight to the ``Variant`` counters (when the cache is down; never from
    a render)."""
    column = {IMPRESSION: "impressions", CLICK: "clicks", CONVERSION: "conversions"}[kind]
    for variant_id, count in sorted(counts.items()):
        Variant.objects.filter(pk=variant_id).update(**{column: F(column) + count})


def _record(kind: str, variant_ids: Iterable[int], at: float | None) -> None:
    counts: dict[int, int] = {}
    for variant_id in variant_ids:
        counts[int(variant_id)] = counts.get(int(variant_id), 0) + 1
    if not counts:
        return
    left = _write(kind, counts, at)
    if left:
        # The cache is down: a click (or a replayed count) goes to the database at once.
        _write_database(kind, left)


def record_impressions(variant_ids: list[int], *, at: float | None = None) -> None:
    """Count one impression for each id (an id listed twice counts twice). Cache only.

    Impressions are the one count made on every page view, so each process collects them
    for ``AIGC["DELIVERY"]["IMPRESSION_BATCH_SECONDS"]`` and writes them in one go (into the
    bucket of the moment they are written): a page pays a dict update, not a cache round
    trip per variant. A process that dies loses at most that long of its impressions; 0
    writes every impression at once. ``at`` (tests, replays) always writes at once.
    """
    from aigc_django.conf import aigc_settings

    hold = float(aigc_settings.DELIVERY["IMPRESSION_BATCH_SECONDS"])
    if at is not None:
        _record(IMPRESSION, variant_ids, at)
        return
    global _held_since
    taken: dict[int, int] = {}
    now = time.monotonic()
    with _held_lock:
        for variant_id in variant_ids:
            _held[int(variant_id)] = _held.get(int(variant_id), 0) + 1
        if hold <= 0 or now - _held_since >= hold:
            taken = dict(_held)
            _held.clear()
            _held_since = now
    if taken:
        _write_held(taken)


def flush_held_impressions(*, at_exit: bool = False) -> None:
    """Write the impressions this process still holds (at exit; tests). At exit, what the
    cache cannot take (it is down) goes to the ``Variant`` counters instead."""
    global _held_since
    with _held_lock:
        taken = dict(_held)
        _held.clear()
        _held_since = time.monotonic()
    if not taken:
        return
    if not at_exit:
        _write_held(taken)
        return
    left = _write(IMPRESSION, taken)
    if left:
        with contextlib.suppress(Exception):
            _write_database(IMPRESSION, left)


def _write_held(taken: dict[int, int]) -> None:
    """Write held impressions; while the cache is down they stay held in this process and go
    with its next write (a render never writes to the database)."""
    left = _write(IMPRESSION, taken)
    if left:
        with _held_lock:
            for variant_id, count in left.items():
                _held[variant_id] = _held.get(variant_id, 0) + count


# Impressions this process holds until its next write (see record_impressions).
_held: dict[int, int] = {}
_held_lock = threading.Lock()
_held_since = time.monotonic()
atexit.register(flush_held_impressions, at_exit=True)


def record_click(variant_id: int, *, at: float | None = None) -> None:
    """Count one click on a variant. Cache only."""
    _record(CLICK, [variant_id], at)


def record_conversion(variant_id: int, *, at: float | None = None) -> None:
    """Count one conversion (a purchase attributed to a click on the variant). Cache only."""
    _record(CONVERSION, [variant_id], at)


def pending_counts(
    variant_ids: list[int], *, now: float | None = None
) -> dict[int, tuple[int, int]]:
    """Not-yet-flushed ``(impressions, clicks)`` per variant id, in one cache ``get_many``
    (plus the impressions this process holds, see :func:`record_impressions`).

    Every id gets an entry (``(0, 0)`` when nothing is pending). Add these to the
    ``Variant`` counters to get the current totals. No database query.
    """
    ids = [int(variant_id) for variant_id in variant_ids]
    last = current_bucket(now)
    buckets = range(last - PENDING_BUCKETS + 1, last + 1)
    keys = [
        _counter_key(kind, bucket, variant_id)
        for variant_id in ids
        for bucket in buckets
        for kind in (IMPRESSION, CLICK)
    ]
    try:
        found = cache.get_many(keys) if keys else {}
    except Exception as exc:  # the cache is down: the database's counters and what is held
        logger.warning("Cache unreachable (%s); pending counts left out.", exc)
        found = {}
    counts: dict[int, tuple[int, int]] = {}
    for variant_id in ids:
        impressions = sum(
            int(found.get(_counter_key(IMPRESSION, bucket, variant_id), 0)) for bucket in buckets
        )
        clicks = sum(
            int(found.get(_counter_key(CLICK, bucket, variant_id), 0)) for bucket in buckets
        )
        counts[variant_id] = (impressions + _held.get(variant_id, 0), clicks)
    return counts


def _chunks(values: list[int], size: int) -> Iterable[list[int]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


def read_bucket(bucket: int, variant_ids: list[int]) -> dict[int, tuple[int, int, int]]:
    """The ``(impressions, clicks, conversions)`` a bucket holds, for variants with any."""
    deltas: dict[int, tuple[int, int, int]] = {}
    for chunk in _chunks(variant_ids, CHUNK_SIZE):
        keys = [_counter_key(kind, bucket, variant_id) for variant_id in chunk for kind in KINDS]
        found = cache.get_many(keys)
        if not found:
            continue
        for variant_id in chunk:
            counts = tuple(
                max(int(found.get(_counter_key(kind, bucket, variant_id), 0)), 0) for kind in KINDS
            )
            if any(counts):
                deltas[variant_id] = counts  # type: ignore[assignment]
    return deltas


def apply_bucket(bucket: int, deltas: dict[int, tuple[int, int, int]]) -> int:
    """Add a bucket's deltas to the ``Variant`` counters once; return the events added.

    Returns 0, adding nothing, when the bucket was already applied (by another flusher, or
    by one that died before deleting the keys).
    """
    total = sum(sum(counts) for counts in deltas.values())
    try:
        with transaction.atomic():
            # First, so that a second flusher fails here before touching any counter.
            IngestBatch.objects.create(key=_batch_key(bucket), size=total)
            for variant_id, (impressions, clicks, conversions) in sorted(deltas.items()):
                Variant.objects.filter(pk=variant_id).update(
                    impressions=F("impressions") + impressions,
                    clicks=F("clicks") + clicks,
                    conversions=F("conversions") + conversions,
                )
    except IntegrityError:
        return 0
    return total


def forget_bucket(bucket: int, variant_ids: list[int]) -> None:
    """Delete a bucket's keys (after it was applied)."""
    for chunk in _chunks(variant_ids, CHUNK_SIZE):
        cache.delete_many(
            [_counter_key(kind, bucket, variant_id) for variant_id in chunk for kind in KINDS]
        )
    cache.delete(_active_key(bucket))


def closed_buckets(now: float | None = None) -> list[int]:
    """Buckets that hold counts and that no writer will touch any more, oldest first."""
    last_closed = current_bucket(now) - 2
    buckets = range(last_closed - LOOKBACK_BUCKETS + 1, last_closed + 1)
    markers = cache.get_many([_active_key(bucket) for bucket in buckets])
    return [bucket for bucket in buckets if _active_key(bucket) in markers]


def flush_counters(*, now: float | None = None) -> int:
    """Move the closed buckets' counts to the ``Variant`` counters; return the events moved.

    Safe to run from several workers at once and to rerun after a crash: see the module
    docstring for why nothing is counted twice.
    """
    buckets = closed_buckets(now)
    if not buckets:
        return 0
    applied = set(
        IngestBatch.objects.filter(key__in=[_batch_key(bucket) for bucket in buckets]).values_list(
            "key", flat=True
        )
    )
    variant_ids = list(Variant.objects.order_by("pk").values_list("pk", flat=True))
    moved = 0
    for bucket in buckets:
        if _batch_key(bucket) not in applied:
            moved += apply_bucket(bucket, read_bucket(bucket, variant_ids))
        forget_bucket(bucket, variant_ids)
    if moved:
        # The cached slot entries carry the database counters the bandit adds pending
        # counts to: refresh them, or the moved counts would vanish from its view.
        from aigc_django.delivery.cache import bump_version

        bump_version()
    return moved
