"""Event ingestion: buffered, bulk writes that lose nothing and duplicate nothing.

``record(events)`` takes clean events (see :mod:`aigc_django.tracking.events`):

* ``INGEST["MODE"] = "direct"`` writes them at once, in one bulk statement.
* ``"buffered"`` appends them to a buffer that is written in bulk when it reaches
  ``BATCH_SIZE``, whenever the ``aigc_django.flush_events`` task runs, and at shutdown.

The buffer is per process (``BUFFER = "memory"``) or a Redis list (``BUFFER =
"redis://..."``). A Redis flusher moves a batch to its own key before writing it and writes
the events together with an :class:`IngestBatch` row in one transaction, so a flusher that dies
at any point leaves a batch that the next flush writes exactly once. When Redis or the Celery
broker is unreachable, events are written directly and a warning is logged.

On PostgreSQL (psycopg 3) events are written with ``COPY``; elsewhere with ``bulk_create``.
"""

from __future__ import annotations

import atexit
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import timedelta
from functools import lru_cache
from typing import Any

from celery.signals import worker_process_shutdown
from django.core.exceptions import ValidationError
from django.db import DataError, IntegrityError, connections, router, transaction

from aigc_django.conf import aigc_settings
from aigc_django.models.tracking import Event, IngestBatch, Visitor
from aigc_django.tracking.events import (
    are_time_texts,
    are_uuid_texts,
    time_text,
    visitor_text,
)

logger = logging.getLogger("aigc_django.tracking")

EVENT_COLUMNS = (
    "visitor_id",
    "kind",
    "item_key",
    "category_key",
    "value",
    "properties",
    "occurred_at",
)
# Keep IN lists and bulk statements well inside every backend's parameter limit.
CHUNK = 5000
# last_seen moves forward (and first_seen back) only; on PostgreSQL a row is rewritten only
# when last_seen moves by more than LAST_SEEN_STEP (or first_seen moves back), so the same
# visitors in batch after batch cost little.
LAST_SEEN_STEP = timedelta(minutes=5)
# On PostgreSQL the statement reads each visitor's first and last time back from the events
# the transaction has just written (by id: above an id it drew from the events' sequence before
# writing them, up to the sequence's last value in this session); the range may also hold
# events that other writers committed meanwhile, whose visitors are then upserted again, to no
# effect. The statement also answers which visitors were merged into another: a merged row is
# always "updated" (to no effect), so RETURNING shows it, read from the row's latest version
# after its lock is taken, so a merge that commits while the writer waits is seen. Rows are
# written (and locked) in id order, so concurrent writers never deadlock.
UPSERT_SQL = {
    "postgresql": (
        "WITH written AS ("
        "INSERT INTO {visitors} AS v (id, first_seen, last_seen) "
        "SELECT visitor_id, min(occurred_at), max(occurred_at) FROM {events} "
        "WHERE id > %s AND id <= (SELECT currval(pg_get_serial_sequence(%s, 'id'))) "
        "GROUP BY visitor_id ORDER BY visitor_id "
        "ON CONFLICT (id) DO UPDATE SET "
        "last_seen = GREATEST(v.last_seen, EXCLUDED.last_seen), "
        "first_seen = LEAST(v.first_seen, EXCLUDED.first_seen) "
        "WHERE v.last_seen < EXCLUDED.last_seen - interval '{step} seconds' "
        "OR v.first_seen > EXCLUDED.first_seen OR v.merged_into_id IS NOT NULL "
        "RETURNING v.id, v.merged_into_id"
        ") SELECT id, merged_into_id FROM written WHERE merged_into_id IS NOT NULL"
    ),
    "sqlite": (
        "INSERT INTO {visitors} AS v (id, first_seen, last_seen) VALUES (%s, %s, %s) "
        "ON CONFLICT (id) DO UPDATE SET "
        "last_seen = MAX(v.last_seen, excluded.last_seen), "
        "first_seen = MIN(v.first_seen, excluded.first_seen) "
        "WHERE v.last_seen < excluded.last_seen OR v.first_seen > excluded.first_seen"
    ),
}
_encode_json = json.JSONEncoder(separators=(",", ":")).encode


# --------------------------------------------------------------------------------- writing


def _column(
    events: Sequence[dict[str, Any]],
    field: str,
    all_exact: Callable[[str, int], bool],
    convert: Callable[[Any], str],
) -> list[str]:
    """The events' ``field`` as texts of one exact form, checked all at once (``all_exact``
    of the comma-joined texts; a text holding a comma cannot pass), and converted one by one
    (``convert``) only when that fails."""
    values = [event[field] for event in events]
    try:
        joined = ",".join(values)
    except TypeError:  # not all texts
        joined = ""
    if all_exact(joined, len(values)):
        return values
    return [convert(value) for value in values]


def _checked_columns(events: Sequence[dict[str, Any]]) -> tuple[list[str], list[str]]:
    """The events' visitor ids (canonical) and times (time_text() texts); ValueError or
    TypeError for one that is neither, before anything is written."""
    visitors = _column(events, "visitor", are_uuid_texts, visitor_text)
    return visitors, _column(events, "occurred_at", are_time_texts, time_text)


def _event_id_floor(using: str) -> int | None:
    """On PostgreSQL, an id below those of every event this session writes next (drawn from
    the events' id sequence); None elsewhere."""
    connection = connections[using]
    if connection.vendor != "postgresql":
        return None
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT nextval(pg_get_serial_sequence(%s, 'id'))",
            [connection.ops.quote_name(Event._meta.db_table)],
        )
        return cursor.fetchone()[0]


def _upsert_visitors(
    visitors: list[str], times: list[str], using: str, events_above: int | None = None
) -> dict[str, str]:
    """Create missing visitors, widen first/last seen; return {merged id: id it went into}.

    ``visitors`` and ``times`` are the events' canonical visitor ids and time_text() times.
    On PostgreSQL they are read back from the events just written instead, those with ids
    above ``events_above`` (from :func:`_event_id_floor`, taken before writing them).
    """
    connection = connections[using]
    ops = connection.ops
    table = ops.quote_name(Visitor._meta.db_table)
    if connection.vendor == "postgresql" and events_above is not None:
        events = ops.quote_name(Event._meta.db_table)
        with connection.cursor() as cursor:
            cursor.execute(
                UPSERT_SQL["postgresql"].format(
                    visitors=table, events=events, step=int(LAST_SEEN_STEP.total_seconds())
                ),
                [events_above, events],
            )
            return {str(a): str(b) for a, b in cursor.fetchall()}
    seen: dict[str, tuple[str, str]] = {}
    for visitor, when in zip(visitors, times, strict=True):
        first, last = seen.get(visitor, (when, when))
        seen[visitor] = (min(first, when), max(last, when))
    ordered = sorted(seen.items())
    if connection.vendor == "sqlite":
        fields = [Visitor._meta.get_field(name) for name in ("id", "first_seen", "last_seen")]
        rows = [
            tuple(
                f.get_db_prep_value(v, connection)
                for f, v in zip(fields, (uuid.UUID(vid), first, last), strict=True)
            )
            for vid, (first, last) in ordered
        ]
        with connection.cursor() as cursor:
            cursor.executemany(UPSERT_SQL["sqlite"].format(visitors=table), rows)
    else:
        Visitor.objects.using(using).bulk_create(
            [Visitor(id=vid, first_seen=first, last_seen=last) for vid, (first, last) in ordered],
            update_conflicts=True,
            unique_fields=["id"],
            update_fields=["last_seen"],
            batch_size=CHUNK // 4,
        )
    ids = [vid for vid, _ in ordered]
    merged: dict[str, str] = {}
    for start in range(0, len(ids), CHUNK):
        pairs = (
            Visitor.objects.using(using)
            .filter(id__in=ids[start : start + CHUNK], merged_into__isnull=False)
            .values_list("id", "merged_into_id")
        )
        merged.update((str(a), str(b)) for a, b in pairs)
    return merged


def _rows(
    events: Sequence[dict[str, Any]], visitors: list[str], times: list[str]
) -> Iterator[tuple]:
    """The events' rows in EVENT_COLUMNS order, properties still a dict."""
    for visitor, event, when in zip(visitors, events, times, strict=True):
        yield (
            visitor,
            event["kind"],
            event.get("item") or "",
            event.get("category") or "",
            event.get("value"),
            event.get("properties") or {},
            when,
        )


def _copy_rows(rows: Iterable[tuple], using: str) -> bool:
    """Write rows with PostgreSQL COPY; False, having taken no row, when the connection
    cannot (not psycopg 3)."""
    connection = connections[using]
    if connection.vendor != "postgresql":
        return False
    with connection.cursor() as cursor:
        raw = cursor.cursor
        if not hasattr(raw, "copy"):
            return False
        table = connection.ops.quote_name(Event._meta.db_table)
        columns = ", ".join(connection.ops.quote_name(c) for c in EVENT_COLUMNS)
        # Raised as Django's DatabaseError subclasses, like every other query's errors.
        with (
            connection.wrap_database_errors,
            raw.copy(f"COPY {table} ({columns}) FROM STDIN") as copy,
        ):
            write = copy.write_row
            for visitor, kind, item, category, value, properties, when in rows:
                write((visitor, kind, item, category, value, _encode_json(properties), when))
    return True


def write_events(events: Sequence[dict[str, Any]], *, batch_key: str | None = None) -> int:
    """Write clean events in one transaction and return how many were written.

    With ``batch_key`` the batch is written at most once: a second call with the same key
    writes nothing and returns 0.
    """
    if not events:
        return 0
    using = router.db_for_write(Event)
    visitors, times = _checked_columns(events)
    try:
        with transaction.atomic(using=using):
            if batch_key is not None:
                IngestBatch.objects.using(using).create(key=batch_key, size=len(events))
            floor = _event_id_floor(using)
            rows = _rows(events, visitors, times)
            if not _copy_rows(rows, using):  # (it took no row)
                Event.objects.using(using).bulk_create(
                    [Event(**dict(zip(EVENT_COLUMNS, row, strict=True))) for row in rows],
                    batch_size=CHUNK // len(EVENT_COLUMNS),
                )
            # Visitors last: their rows stay locked only from here to the commit.
            merged = _upsert_visitors(visitors, times, using, events_above=floor)
            for old, new in merged.items():
                # A login merged this visitor: its events (these, and any that another
                # writer left behind) follow it, under the lock just taken on the merged row.
                Event.objects.using(using).filter(visitor_id=old).update(visitor_id=new)
    except IntegrityError:
        if (
            batch_key is not None
            and IngestBatch.objects.using(using).filter(key=batch_key).exists()
        ):
            logger.info("Batch %s was already written; dropped the copy.", batch_key)
            return 0
        raise
    return len(events)


# --------------------------------------------------------------------------------- buffers


@dataclass
class Batch:
    key: str
    events: list[dict[str, Any]]


class MemoryBuffer:
    """Events waiting in this process. A killed process loses what it holds."""

    def __init__(self) -> None:
        self._events: list[dict[str, Any]] = []
        self.dead_letters: list[Batch] = []
        self._oldest: float | None = None
        self._lock = threading.Lock()

    def push(self, events: Sequence[dict[str, Any]]) -> int:
        with self._lock:
            if not self._events:
                self._oldest = time.monotonic()
            self._events.extend(events)
            return len(self._events)

    def age(self) -> float:
        oldest = self._oldest
        return time.monotonic() - oldest if oldest is not None and self._events else 0.0

    def take(self, limit: int) -> Batch | None:
        with self._lock:
            if not self._events:
                return None
            taken, self._events = self._events[:limit], self._events[limit:]
            if not self._events:
                self._oldest = None
        return Batch(uuid.uuid4().hex, taken)

    def finish(self, batch: Batch) -> None:
        pass

    def give_back(self, batch: Batch) -> None:
        with self._lock:
            self._events[:0] = batch.events
            self._oldest = self._oldest or time.monotonic()

    def stale(self) -> list[Batch]:
        return []

    def set_aside(self, batch: Batch) -> None:
        self.dead_letters.append(batch)

    def drop_set_aside(self, matches: Callable[[dict[str, Any]], bool]) -> int:
        dropped = 0
        for batch in self.dead_letters:
            kept = [e for e in batch.events if not matches(e)]
            dropped += len(batch.events) - len(kept)
            batch.events = kept
        return dropped

    def __len__(self) -> int:
        return len(self._events)


# Moves up to ARGV[1] events from the queue to a batch key and notes when, atomically.
TAKE_SCRIPT = """
local events = redis.call('LRANGE', KEYS[1], 0, tonumber(ARGV[1]) - 1)
if #events == 0 then return events end
redis.call('LTRIM', KEYS[1], #events, -1)
for i = 1, #events, 500 do
  redis.call('RPUSH', KEYS[2], unpack(events, i, math.min(i + 499, #events)))
end
redis.call('ZADD', KEYS[3], ARGV[2], KEYS[2])
return events
"""


class RedisBuffer:
    """Events waiting in a Redis list, shared by every process and durable across deaths."""

    def __init__(self, url: str, prefix: str) -> None:
        import redis

        self.client = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
        self.queue = f"{prefix}:queue"
        self.taken = f"{prefix}:taken"
        self.batch_prefix = f"{prefix}:batch:"
        self.flush_flag = f"{prefix}:flush-scheduled"
        self.dead = f"{prefix}:{DEAD_LETTERS}"
        self._take = self.client.register_script(TAKE_SCRIPT)

    def push(self, events: Sequence[dict[str, Any]]) -> int:
        return int(self.client.rpush(self.queue, *[json.dumps(e) for e in events]))

    def take(self, limit: int) -> Batch | None:
        key = f"{self.batch_prefix}{uuid.uuid4().hex}"
        raw = self._take(keys=[self.queue, key, self.taken], args=[limit, time.time()])
        if not raw:
            return None
        return Batch(key.removeprefix(self.batch_prefix), [json.loads(e) for e in raw])

    def finish(self, batch: Batch) -> None:
        key = f"{self.batch_prefix}{batch.key}"
        self.client.pipeline().delete(key).zrem(self.taken, key).execute()

    def give_back(self, batch: Batch) -> None:
        # The batch stays under its own key; the next flush after RECOVER_AFTER retries it.
        pass

    def set_aside(self, batch: Batch) -> None:
        key = f"{self.batch_prefix}{batch.key}"
        events = [json.dumps(e) for e in batch.events]
        self.client.pipeline().rpush(self.dead, *events).delete(key).zrem(self.taken, key).execute()

    def drop_set_aside(self, matches: Callable[[dict[str, Any]], bool]) -> int:
        """Remove set-aside events that ``matches`` (erasure, retention)."""
        dropped = 0
        for raw in self.client.lrange(self.dead, 0, -1):
            try:
                event = json.loads(raw)
            except ValueError:
                event = {}
            if not isinstance(event, dict) or matches(event):
                dropped += int(self.client.lrem(self.dead, 1, raw))
        return dropped

    def stale(self) -> list[Batch]:
        cutoff = time.time() - aigc_settings.INGEST["RECOVER_AFTER"]
        batches = []
        for raw_key in self.client.zrangebyscore(self.taken, "-inf", cutoff):
            key = raw_key.decode()
            events = [json.loads(e) for e in self.client.lrange(key, 0, -1)]
            batches.append(Batch(key.removeprefix(self.batch_prefix), events))
        return batches

    def claim_flush(self) -> bool:
        """True for the one caller that should schedule a flush in the next few seconds."""
        return bool(self.client.set(self.flush_flag, "1", nx=True, ex=5))

    def __len__(self) -> int:
        return int(self.client.llen(self.queue))


Buffer = MemoryBuffer | RedisBuffer
DEAD_LETTERS = "dead"


@lru_cache(maxsize=1)
def get_buffer() -> Buffer:
    """The buffer named by ``INGEST["BUFFER"]``, one per process."""
    setting = aigc_settings.INGEST["BUFFER"]
    if setting == "memory":
        buffer = MemoryBuffer()
        _memory_buffers.append(buffer)
        return buffer
    return RedisBuffer(setting, aigc_settings.INGEST["REDIS_KEY_PREFIX"])


_memory_buffers: list[MemoryBuffer] = []


def reset_buffer() -> None:
    """Forget the buffer (settings changed); a memory buffer is flushed first."""
    if get_buffer.cache_info().currsize:
        buffer = get_buffer()
        if isinstance(buffer, MemoryBuffer):
            if len(buffer):
                flush_buffer(buffer)
            _memory_buffers.remove(buffer)
    get_buffer.cache_clear()


# -------------------------------------------------------------------------------- flushing


# A batch failing with these can never be written: it is set aside, not retried forever.
BAD_BATCH_ERRORS = (DataError, ValidationError, ValueError, TypeError, KeyError)


def _write_batch(buffer: Buffer, batch: Batch) -> int:
    try:
        written = write_events(batch.events, batch_key=batch.key)
    except BAD_BATCH_ERRORS as exc:
        logger.error(
            "Batch %s of %d events cannot be written (%s); set aside under %s.",
            batch.key,
            len(batch.events),
            exc,
            DEAD_LETTERS,
        )
        buffer.set_aside(batch)
        return 0
    except Exception:
        buffer.give_back(batch)
        raise
    buffer.finish(batch)
    return written


def flush_buffer(buffer: Buffer | None = None) -> int:
    """Write everything waiting in the buffer, batches that died mid-flush included.

    A batch the database refuses as data (it cannot succeed on a retry) is set aside with
    an error in the log, so one bad batch never blocks the ones behind it.
    """
    buffer = buffer or get_buffer()
    written = 0
    for batch in buffer.stale():
        logger.warning("Recovering batch %s of %d events.", batch.key, len(batch.events))
        written += _write_batch(buffer, batch)
    size = aigc_settings.INGEST["BATCH_SIZE"]
    while (batch := buffer.take(size)) is not None:
        written += _write_batch(buffer, batch)
    return written


def _schedule_flush() -> None:
    from aigc_django.tasks import flush_events

    try:
        flush_events.apply_async(queue=aigc_settings.CELERY_QUEUE, retry=False)
    except Exception as exc:
        logger.warning("Celery broker unreachable (%s); flushing events in this process.", exc)
        try:
            flush_buffer()
        except Exception as flush_error:  # the events are safe in Redis
            logger.warning("Flush failed (%s); events stay in Redis.", flush_error)


def record(events: Sequence[dict[str, Any]]) -> None:
    """Store clean events the way ``INGEST`` says, then attribute purchases to clicks."""
    from aigc_django.delivery.clicks import attribute_purchases

    _store(events)
    attribute_purchases(events)


def _store(events: Sequence[dict[str, Any]]) -> None:
    if not events:
        return
    ingest = aigc_settings.INGEST
    if ingest["MODE"] != "buffered":
        write_events(events)
        return
    buffer = get_buffer()
    try:
        waiting = buffer.push(events)
    except Exception as exc:
        logger.warning("Event buffer unreachable (%s); wrote %d events directly.", exc, len(events))
        write_events(events)
        return
    if isinstance(buffer, MemoryBuffer):
        if waiting >= ingest["BATCH_SIZE"] or buffer.age() >= ingest["FLUSH_INTERVAL"]:
            try:
                flush_buffer(buffer)
            except Exception as exc:
                # The events stay buffered and are written by a later flush: they were
                # accepted, so the caller must not retry them.
                logger.warning("Flush failed (%s); %d events stay buffered.", exc, len(buffer))
    elif waiting >= ingest["BATCH_SIZE"]:
        try:
            claimed = buffer.claim_flush()
        except Exception as exc:  # the events are safe in Redis; the flush task will come
            logger.warning("Could not schedule an event flush: %s", exc)
            return
        if claimed:
            _schedule_flush()


@atexit.register
@worker_process_shutdown.connect  # Celery's pool children end with os._exit: no atexit.
def _flush_at_exit(**kwargs: Any) -> None:
    for buffer in _memory_buffers:
        if len(buffer):
            try:
                flush_buffer(buffer)
            except Exception:
                logger.exception("Could not flush %d buffered events at exit.", len(buffer))
