"""Buffered and direct ingestion: bulk writes that lose nothing and duplicate nothing."""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from django.core.exceptions import ValidationError
from django.db import DatabaseError, connection, connections, transaction
from django.test.utils import CaptureQueriesContext

from aigc_django import track
from aigc_django.exceptions import InvalidEvent
from aigc_django.models import Event, IngestBatch, Visitor
from aigc_django.tracking import ingest
from aigc_django.tracking.events import (
    TIME_TEXT,
    UUID_TEXT,
    are_time_texts,
    are_uuid_texts,
    clean_event,
    time_text,
)

pytestmark = pytest.mark.django_db(transaction=True)


def make_events(count: int, visitors: int = 3) -> list[dict]:
    ids = [uuid.uuid4() for _ in range(visitors)]
    start = datetime.now(UTC) - timedelta(hours=1)
    return [
        clean_event(
            {
                "kind": "product_view",
                "item": f"sku-{i}",
                "category": "shoes",
                "properties": {"n": i, "text": 'tab\there, newline\n, quote " and \\ slash'},
                "occurred_at": (start + timedelta(seconds=i)).isoformat(),
            },
            visitor_id=ids[i % visitors],
        )
        for i in range(count)
    ]


def test_write_events_stores_every_field_and_creates_visitors():
    events = make_events(10)
    assert ingest.write_events(events) == 10
    stored = list(Event.objects.order_by("occurred_at"))
    assert [e.item_key for e in stored] == [f"sku-{i}" for i in range(10)]
    assert stored[3].properties == events[3]["properties"]
    assert stored[3].occurred_at == datetime.fromisoformat(events[3]["occurred_at"])
    assert Visitor.objects.count() == 3
    first = Visitor.objects.get(id=events[0]["visitor"])
    assert first.first_seen == stored[0].occurred_at
    assert first.last_seen == stored[9].occurred_at


def test_write_events_uses_copy_on_postgresql(postgres):
    events = make_events(2500, visitors=50)
    with CaptureQueriesContext(connection) as queries:
        assert ingest.write_events(events) == 2500
    statements = " ".join(q["sql"] for q in queries).upper()
    assert 'INSERT INTO "AIGC_DJANGO_EVENT"' not in statements
    assert Event.objects.count() == 2500
    assert Event.objects.filter(properties__n=2499).count() == 1


def test_visitors_are_read_back_from_the_events_written_even_with_another_writer_between(
    postgres, monkeypatch
):
    # On PostgreSQL the visitor upsert reads the batch's visitors and times back from the
    # events it wrote, by id; events another writer commits in between fall in that id range
    # too: ours are no longer numbered one after another, and none may be missed.
    ours, theirs = make_events(6, visitors=2), make_events(4, visitors=2)
    copy_rows = ingest._copy_rows
    other: list = []

    def copy_after_another_writer(rows, using):
        if not other:
            other.append(_in_thread(ingest.write_events, theirs))
            other[0][0].join(10)
        return copy_rows(rows, using)

    monkeypatch.setattr(ingest, "_copy_rows", copy_after_another_writer)
    assert ingest.write_events(ours) == 6
    assert other[0][1] == {"result": 4}
    assert Event.objects.count() == 10 and Visitor.objects.count() == 4
    for events in (ours, theirs):
        for visitor in {e["visitor"] for e in events}:
            times = [
                datetime.fromisoformat(e["occurred_at"]) for e in events if e["visitor"] == visitor
            ]
            row = Visitor.objects.get(id=visitor)
            assert (row.first_seen, row.last_seen) == (min(times), max(times))


def test_a_batch_key_is_written_once():
    events = make_events(5)
    assert ingest.write_events(events, batch_key="batch-1") == 5
    assert ingest.write_events(events, batch_key="batch-1") == 0
    assert Event.objects.count() == 5
    assert IngestBatch.objects.get().size == 5


def test_a_failed_write_stores_nothing():
    events = make_events(4)
    events[2]["visitor"] = "not-a-uuid"
    with pytest.raises((ValidationError, DatabaseError, ValueError)):
        ingest.write_events(events, batch_key="bad")
    assert Event.objects.count() == 0
    assert not IngestBatch.objects.exists()


def test_late_events_widen_first_and_last_seen_but_never_narrow_them():
    visitor = uuid.uuid4()
    late = make_events(1, visitors=1)[0]
    late["visitor"] = str(visitor)
    early = {**late, "occurred_at": (datetime.now(UTC) - timedelta(days=3)).isoformat()}
    ingest.write_events([late])
    ingest.write_events([early])
    stored = Visitor.objects.get(pk=visitor)
    assert stored.last_seen == datetime.fromisoformat(late["occurred_at"])
    assert stored.first_seen == datetime.fromisoformat(early["occurred_at"])


def test_clean_times_are_utc_texts_that_sort_as_the_times_do():
    made = clean_event(
        {"kind": "page_view", "occurred_at": "2026-11-30T14:00:00+02:00"},
        visitor_id=uuid.uuid4(),
        now=datetime(2026, 11, 30, 13, tzinfo=UTC),
    )
    assert made["occurred_at"] == "2026-11-30T12:00:00.000000+00:00"
    # A text already in that form is kept; a visitor id in any form becomes the one form.
    vid = uuid.uuid4()
    for given in (vid, str(vid).upper(), vid.hex, str(vid)):
        made = clean_event(
            {"kind": "page_view", "occurred_at": "2026-11-30T12:00:00.500000+00:00"},
            visitor_id=given,
            now=datetime(2026, 11, 30, 13, tzinfo=UTC),
        )
        assert made["visitor"] == str(vid)
        assert made["occurred_at"] == "2026-11-30T12:00:00.500000+00:00"
    with pytest.raises(InvalidEvent, match="must be a UUID"):
        clean_event({"kind": "page_view"}, visitor_id=f"{vid},{vid}")


def test_times_in_any_form_are_written_and_compared_as_times():
    # Events from an older buffer may carry other offsets, or datetimes (not from clean_event).
    base = make_events(1, visitors=1)[0]
    late = {**base, "occurred_at": "2026-11-30T09:30:00-02:00"}  # 11:30 UTC: the latest
    early = {**base, "occurred_at": datetime(2026, 11, 30, 10, 15, tzinfo=UTC)}
    middle = {**base, "occurred_at": "2026-11-30T11:00:00.000000+00:00"}
    assert ingest.write_events([middle, late, early]) == 3
    visitor = Visitor.objects.get(pk=base["visitor"])
    assert visitor.first_seen == datetime(2026, 11, 30, 10, 15, tzinfo=UTC)
    assert visitor.last_seen == datetime(2026, 11, 30, 11, 30, tzinfo=UTC)
    assert sorted(Event.objects.values_list("occurred_at", flat=True)) == [
        datetime(2026, 11, 30, 10, 15, tzinfo=UTC),
        datetime(2026, 11, 30, 11, tzinfo=UTC),
        datetime(2026, 11, 30, 11, 30, tzinfo=UTC),
    ]


def test_visitor_ids_in_any_case_are_one_visitor():
    base = make_events(2, visitors=1)
    base[1]["visitor"] = base[1]["visitor"].upper()
    assert ingest.write_events(base[:1]) == 1
    assert ingest.write_events(base[1:]) == 1
    assert Visitor.objects.count() == 1 and Event.objects.count() == 2


def test_database_errors_from_copy_are_django_errors(postgres):
    event = make_events(1)[0]
    event["category"] = "x" * 500  # past validation, too long for the column
    with pytest.raises(DatabaseError):
        ingest.write_events([event])


def test_events_of_a_merged_visitor_follow_it():
    user_visitor = Visitor.objects.create()
    anonymous = Visitor.objects.create(merged_into=user_visitor)
    event = make_events(1)[0]
    event["visitor"] = str(anonymous.pk)
    ingest.write_events([event])
    assert Event.objects.get().visitor_id == user_visitor.pk


def test_a_text_holding_two_ids_or_two_times_is_refused_and_nothing_is_stored():
    # Ids and times are checked all at once over their joined text; two valid ids joined
    # by a comma in one event must not pass as two.
    events = make_events(2, visitors=2)
    events[0]["visitor"] = f"{events[0]['visitor']},{events[1]['visitor']}"
    with pytest.raises(ValueError):
        ingest.write_events(events)
    events = make_events(2, visitors=2)
    events[0]["occurred_at"] = f"{events[0]['occurred_at']},{events[1]['occurred_at']}"
    with pytest.raises(ValueError):
        ingest.write_events(events)
    assert not Event.objects.exists() and not Visitor.objects.exists()


ID = "0f8fad5b-d9cb-469f-a165-70867728950e"
TIME = "2026-11-30T12:00:00.123456+00:00"


@pytest.mark.parametrize(
    "text",
    [
        ID,
        ID.upper(),
        ID.replace("-", ""),
        "{" + ID + "}",
        ID + " ",
        ID[:-1],
        ID[:-1] + "g",
        ID + "," + ID,
        "",
    ],
)
def test_the_column_check_of_ids_agrees_with_the_exact_form(text):
    exact = bool(UUID_TEXT.fullmatch(text))
    for column in ([text], [ID, text], [text, ID, ID]):
        assert are_uuid_texts(",".join(column), len(column)) is exact


@pytest.mark.parametrize(
    "text",
    [
        TIME,
        TIME.replace("+00:00", "+01:00"),
        TIME.replace("+00:00", "Z"),
        TIME.replace(".123456", ""),
        TIME.replace("T", " "),
        TIME.replace("2", "\u0662"),  # an Arabic-Indic two: a digit, but not ASCII
        TIME + "," + TIME,
        "+00:00" * 5 + "99",
        "",
    ],
)
def test_the_column_check_of_times_agrees_with_the_exact_form(text):
    exact = bool(TIME_TEXT.fullmatch(text))
    for column in ([text], [TIME, text], [text, TIME, TIME]):
        assert are_time_texts(",".join(column), len(column)) is exact


def test_a_time_text_with_digits_beyond_ascii_is_not_taken_as_clean():
    # They would pass a \d pattern, and PostgreSQL refuses them (the whole batch with them).
    with pytest.raises(ValueError):
        time_text(TIME.replace("2", "\u0662"))


def test_ids_and_times_in_other_forms_are_converted_before_writing():
    event = make_events(1, visitors=1)[0]
    event["visitor"] = uuid.UUID(ID)
    event["occurred_at"] = "2026-11-30T13:00:00+01:00"
    assert ingest._checked_columns([event]) == ([ID], ["2026-11-30T12:00:00.000000+00:00"])


def test_direct_mode_writes_at_once():
    track(None, "page_view", visitor=uuid.uuid4())
    assert Event.objects.count() == 1


def test_memory_buffer_flushes_by_size(aigc):
    aigc(INGEST={"MODE": "buffered", "BATCH_SIZE": 3, "FLUSH_INTERVAL": 3600})
    visitor = uuid.uuid4()
    track(None, "page_view", visitor=visitor)
    track(None, "page_view", visitor=visitor)
    assert Event.objects.count() == 0
    track(None, "page_view", visitor=visitor)
    assert Event.objects.count() == 3


def test_memory_buffer_flushes_by_time(aigc, monkeypatch):
    aigc(INGEST={"MODE": "buffered", "BATCH_SIZE": 100, "FLUSH_INTERVAL": 5})
    visitor = uuid.uuid4()
    track(None, "page_view", visitor=visitor)
    assert Event.objects.count() == 0
    buffer = ingest.get_buffer()
    monkeypatch.setattr(buffer, "_oldest", buffer._oldest - 10)
    track(None, "page_view", visitor=visitor)
    assert Event.objects.count() == 2


def test_memory_buffer_flushes_at_exit_and_by_the_task(aigc):
    from aigc_django.tasks import flush_events

    aigc(INGEST={"MODE": "buffered", "BATCH_SIZE": 100, "FLUSH_INTERVAL": 3600})
    track(None, "page_view", visitor=uuid.uuid4())
    ingest._flush_at_exit()
    assert Event.objects.count() == 1
    track(None, "page_view", visitor=uuid.uuid4())
    assert flush_events() == 1
    assert Event.objects.count() == 2


def test_memory_buffer_keeps_events_when_the_write_fails(aigc, monkeypatch):
    aigc(INGEST={"MODE": "buffered", "BATCH_SIZE": 100, "FLUSH_INTERVAL": 3600})
    track(None, "page_view", visitor=uuid.uuid4())

    def broken(*args, **kwargs):
        raise RuntimeError("database went away")

    monkeypatch.setattr(ingest, "write_events", broken)
    with pytest.raises(RuntimeError):
        ingest.flush_buffer()
    monkeypatch.undo()
    assert ingest.flush_buffer() == 1
    assert Event.objects.count() == 1


def test_record_accepts_buffered_events_even_when_the_flush_fails(aigc, monkeypatch, caplog):
    aigc(INGEST={"MODE": "buffered", "BATCH_SIZE": 1, "FLUSH_INTERVAL": 3600})
    real = ingest.write_events
    monkeypatch.setattr(
        ingest,
        "write_events",
        lambda *a, **k: (_ for _ in ()).throw(DatabaseError("database restarting")),
    )
    assert track(None, "page_view", visitor=uuid.uuid4()) is True
    assert "1 events stay buffered" in caplog.text
    monkeypatch.setattr(ingest, "write_events", real)
    assert ingest.flush_buffer() == 1
    assert Event.objects.count() == 1


def bad_batch(count: int = 2) -> list[dict]:
    events = make_events(count)
    events[0]["visitor"] = "not-a-uuid"  # only possible past validation: a corrupt buffer
    return events


def test_a_batch_that_can_never_be_written_is_set_aside(aigc, caplog):
    aigc(INGEST={"MODE": "buffered", "BATCH_SIZE": 2, "FLUSH_INTERVAL": 3600})
    buffer = ingest.get_buffer()
    buffer.push(bad_batch(2))
    buffer.push(make_events(3))
    assert ingest.flush_buffer() == 3
    assert Event.objects.count() == 3
    assert [len(b.events) for b in buffer.dead_letters] == [2]
    assert "cannot be written" in caplog.text


def test_a_batch_with_a_broken_time_text_is_set_aside_not_retried(aigc, caplog):
    # Looks like a clean time (32 characters, +00:00) but is not one: the batch goes to the
    # dead letters (a ValueError before any SQL) instead of being retried forever.
    aigc(INGEST={"MODE": "buffered", "BATCH_SIZE": 2, "FLUSH_INTERVAL": 3600})
    buffer = ingest.get_buffer()
    broken = make_events(2)
    broken[1]["occurred_at"] = "2026-11-30T12:00:00,0000}0+00:00"
    assert len(broken[1]["occurred_at"]) == len(broken[0]["occurred_at"])
    buffer.push(broken)
    buffer.push(make_events(1))
    assert ingest.flush_buffer() == 1
    assert Event.objects.count() == 1
    assert [len(b.events) for b in buffer.dead_letters] == [2]


# ------------------------------------------------------------------------ Redis buffer


@pytest.fixture
def redis_buffered(aigc, redis_url):
    aigc(INGEST={"MODE": "buffered", "BUFFER": redis_url, "BATCH_SIZE": 4, "RECOVER_AFTER": 60})
    return ingest.get_buffer()


def test_redis_buffer_holds_events_until_flushed(redis_buffered):
    visitor = uuid.uuid4()
    for _ in range(3):
        track(None, "page_view", visitor=visitor)
    assert len(redis_buffered) == 3
    assert Event.objects.count() == 0
    assert ingest.flush_buffer() == 3
    assert Event.objects.count() == 3
    assert len(redis_buffered) == 0


def test_redis_buffer_schedules_a_flush_at_batch_size(redis_buffered):
    # CELERY_TASK_ALWAYS_EAGER: the scheduled task runs here and now.
    visitor = uuid.uuid4()
    for _ in range(4):
        track(None, "page_view", visitor=visitor)
    assert Event.objects.count() == 4


def test_flusher_dying_before_commit_loses_nothing(redis_buffered, monkeypatch):
    redis_buffered.push(make_events(3))
    batch = redis_buffered.take(10)  # the flusher took the batch ... and died.
    assert batch is not None and len(redis_buffered) == 0
    assert ingest.flush_buffer() == 0  # too early to call it dead
    monkeypatch.setattr(redis_buffered, "take", redis_buffered.take)
    import time

    real_time = time.time
    monkeypatch.setattr(time, "time", lambda: real_time() + 120)
    assert ingest.flush_buffer() == 3
    assert Event.objects.count() == 3
    assert redis_buffered.stale() == []


def test_flusher_dying_after_commit_duplicates_nothing(redis_buffered, monkeypatch):
    redis_buffered.push(make_events(3))
    batch = redis_buffered.take(10)
    ingest.write_events(batch.events, batch_key=batch.key)  # committed ... and died.
    import time

    real_time = time.time
    monkeypatch.setattr(time, "time", lambda: real_time() + 120)
    assert ingest.flush_buffer() == 0
    assert Event.objects.count() == 3
    assert redis_buffered.stale() == []


def test_a_poison_batch_in_redis_does_not_block_the_queue(redis_buffered):
    redis_buffered.push(bad_batch(4))
    redis_buffered.push(make_events(5))
    assert ingest.flush_buffer() == 5
    assert redis_buffered.client.llen(redis_buffered.dead) == 4
    assert redis_buffered.stale() == [] and len(redis_buffered) == 0


def test_redis_down_falls_back_to_a_direct_write(aigc, caplog):
    aigc(INGEST={"MODE": "buffered", "BUFFER": "redis://127.0.0.1:1/0"})
    with caplog.at_level(logging.WARNING, logger="aigc_django.tracking"):
        assert track(None, "page_view", visitor=uuid.uuid4())
    assert Event.objects.count() == 1
    assert "wrote 1 events directly" in caplog.text


def test_broker_down_flushes_in_process(redis_buffered, broker_down, caplog):
    with caplog.at_level(logging.WARNING, logger="aigc_django.tracking"):
        for _ in range(4):
            track(None, "page_view", visitor=uuid.uuid4())
    assert Event.objects.count() == 4
    assert "broker unreachable" in caplog.text


# Events carry no database foreign key to their visitor: the row locks of ingest, erasure and
# merges keep every event's visitor in place. A write racing an erasure (both orders) and a
# write racing a login merge:


def _in_thread(target, *args):
    """Run ``target`` in a thread with its own connection; return (thread, result box)."""
    box: dict = {}

    def run():
        try:
            box["result"] = target(*args)
        except Exception as exc:  # reported by the test
            box["error"] = exc
        finally:
            connections.close_all()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, box


def _hold_open(work, *args) -> Callable[[], None]:
    """Run ``work(*args)`` in a thread, in a transaction left open (its locks held) until
    the returned function is called; that function ends it and waits for the thread."""
    done, release = threading.Event(), threading.Event()

    def run():
        with transaction.atomic():
            work(*args)
            done.set()
            release.wait(10)

    thread, _ = _in_thread(run)
    assert done.wait(10)

    def end():
        release.set()
        thread.join(10)

    return end


def _waits(target, *args):
    """Start ``target(*args)`` in a thread and check that it is blocked; (thread, box)."""
    thread, box = _in_thread(target, *args)
    thread.join(0.5)
    assert thread.is_alive(), f"{target.__name__} must wait for the other transaction's lock"
    return thread, box


def _orphans() -> int:
    return Event.objects.exclude(visitor_id__in=Visitor.objects.values("id")).count()


def test_an_erasure_waits_for_a_write_in_flight_and_deletes_its_events(postgres):
    from aigc_django.tracking.privacy import erase_visitor

    events = make_events(5, visitors=1)
    ingest.write_events(events[:2])
    end_write = _hold_open(ingest.write_events, events[2:])
    eraser, erased = _waits(erase_visitor, events[0]["visitor"])
    end_write()
    eraser.join(10)
    assert erased.get("result") == {"visitors": 1, "events": 5}, erased
    assert not Event.objects.exists() and not Visitor.objects.exists()


def test_a_write_after_an_erasure_began_waits_and_leaves_no_orphan(postgres, monkeypatch):
    from aigc_django.tracking import privacy

    events = make_events(4, visitors=1)
    visitor = events[0]["visitor"]
    ingest.write_events(events[:2])
    locked, release = threading.Event(), threading.Event()
    lock = privacy.lock_visitors

    def lock_and_hold(ids):
        lock(ids)
        if ids:
            locked.set()
            release.wait(10)

    monkeypatch.setattr(privacy, "lock_visitors", lock_and_hold)
    eraser, erased = _in_thread(privacy.erase_visitor, visitor)
    assert locked.wait(10)
    writer, wrote = _waits(ingest.write_events, events[2:])
    release.set()
    eraser.join(10)
    writer.join(10)
    assert erased.get("result") == {"visitors": 1, "events": 2}, erased
    assert wrote.get("result") == 2, wrote
    # The later events start the visitor afresh (its browser still sends them), whole.
    assert Event.objects.count() == 2 and Visitor.objects.filter(pk=visitor).exists()
    assert _orphans() == 0


def test_a_login_merge_does_not_wait_for_a_writes_copy_and_its_events_follow(postgres, monkeypatch):
    # Events go in first and visitor rows are locked only after them, so a merge (or an
    # erasure) waits for a write's last statement and commit, not for its COPY.
    from django.contrib.auth.models import User

    from aigc_django.tracking.visitors import merge_into_user

    user = User.objects.create_user("shopper")
    root = Visitor.objects.create(user=user)
    events = make_events(3, visitors=1)
    anonymous = uuid.UUID(events[0]["visitor"])
    ingest.write_events(events[:1])
    copied, release = threading.Event(), threading.Event()
    copy = ingest._copy_rows

    def copy_and_hold(rows, using):
        written = copy(rows, using)
        copied.set()
        release.wait(10)
        return written

    monkeypatch.setattr(ingest, "_copy_rows", copy_and_hold)
    writer, wrote = _in_thread(ingest.write_events, events[1:])
    assert copied.wait(10)
    merger, merged = _in_thread(merge_into_user, anonymous, User.objects.get(pk=user.pk))
    merger.join(5)
    finished = not merger.is_alive()
    release.set()
    merger.join(10)
    writer.join(10)
    assert finished, "the merge waited for the write's COPY"
    assert merged.get("result") == root.pk, merged
    assert wrote.get("result") == 2, wrote
    # The write saw the merge when it locked the visitor and moved its events after it.
    assert set(Event.objects.values_list("visitor_id", flat=True)) == {root.pk}
    assert Event.objects.count() == 3


def test_a_login_merge_locks_its_visitors_in_id_order(postgres):
    # As a write does: a merge that took the user's visitor first and then waited for the
    # anonymous one could deadlock with a write naming both.
    from django.contrib.auth.models import User

    from aigc_django.tracking.visitors import lock_visitors, merge_into_user

    user = User.objects.create_user("shopper")
    low, high = sorted([uuid.uuid4(), uuid.uuid4()])
    Visitor.objects.create(id=high, user=user)
    Visitor.objects.create(id=low)
    end_hold = _hold_open(lock_visitors, [low])
    merger, merged = _waits(merge_into_user, low, User.objects.get(pk=user.pk))
    try:
        with transaction.atomic():  # the user's visitor is not locked yet
            assert list(Visitor.objects.select_for_update(nowait=True).filter(id=high))
    finally:
        end_hold()
        merger.join(10)
    assert merged.get("result") == high, merged
    assert Visitor.objects.get(id=low).merged_into_id == high


def test_a_write_waiting_on_a_login_merge_follows_the_merge(postgres):
    from django.contrib.auth.models import User

    from aigc_django.tracking.visitors import merge_into_user

    user = User.objects.create_user("shopper")
    root = Visitor.objects.create(user=user)
    events = make_events(3, visitors=1)
    anonymous = uuid.UUID(events[0]["visitor"])
    ingest.write_events(events[:1])
    end_merge = _hold_open(merge_into_user, anonymous, User.objects.get(pk=user.pk))
    writer, wrote = _waits(ingest.write_events, events[1:])
    end_merge()
    writer.join(10)
    assert wrote.get("result") == 2, wrote
    assert set(Event.objects.values_list("visitor_id", flat=True)) == {root.pk}
