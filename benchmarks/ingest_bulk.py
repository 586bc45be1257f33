"""Bulk ingest: the app's ``write_events`` (COPY + visitor upsert) vs Django ``bulk_create``.

    .venv/bin/python benchmarks/ingest_bulk.py [--events 200000] [--visitors 20000] [--repeats 3]
        [--span 1h] [--batch-size N] [--phases]

The same clean events (made by ``clean_event``) are written, into emptied tables, by:

* ``app write_events x BATCH_SIZE``: ``write_events(batch, batch_key=...)`` per batch of
  ``INGEST["BATCH_SIZE"]`` events, exactly what ``flush_buffer()`` does;
* ``app write_events x 1``: one ``write_events`` call with every event;
* ``app COPY step only``: the id and time checks and the COPY inside ``write_events``
  (``_checked_columns``, ``_copy_rows``) with the visitors created beforehand: the same work as the
  peer, to show where the time goes;
* ``peer bulk_create``: ``Event.objects.bulk_create([Event(...), ...], batch_size=1000)``.

The events come from ``--visitors`` visitors (a tenth of them make half the events), their
times spread over ``--span`` (``1h``: a busy shop's hour, each flusher batch covering
seconds; ``30d``: the old, pessimistic shape, each batch covering hours) and are written in
time order, as a flusher sees them. The app creates and updates its own visitors
inside the timed call; the peer's visitors are created beforehand, outside the timing, which
favours the peer. Each variant runs ``--repeats`` times, in alternating order; the tables are
truncated (and a CHECKPOINT taken) before every run, and every run's row count is checked.
The script also prints how long each flusher batch keeps its visitor rows locked (what a
login merge or an erasure of one of them may wait for): from the upsert's start to the commit.
``--phases`` instead times each step inside the flusher's ``write_events`` calls.
"""

from __future__ import annotations

import argparse
import functools
import gc
import sys
import time
import uuid
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import common

GOAL = 5.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--visitors", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--peer-batch-size", type=int, default=1000)
    parser.add_argument(
        "--batch-size",
        type=int,
        action="append",
        help='flusher batch size [INGEST["BATCH_SIZE"]]; repeat it to compare several side by '
        "side (the first is judged against the goal)",
    )
    parser.add_argument("--db", default="aigc_bench", help="PostgreSQL database (created)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--span", default="1h", help="window of the events' occurred_at: 1h, 30d, 90m, ..."
    )
    parser.add_argument(
        "--phases",
        action="store_true",
        help="instead: time each step of the flusher's path separately (no peer, no ratio)",
    )
    args = parser.parse_args()
    span = common.parse_span(args.span)

    common.setup_django(db=args.db, mode="direct")

    from django.db import transaction

    from aigc_django.conf import aigc_settings
    from aigc_django.models.tracking import Event, Visitor
    from aigc_django.tracking import ingest
    from aigc_django.tracking.ingest import write_events

    batch_sizes = args.batch_size or [aigc_settings.INGEST["BATCH_SIZE"]]
    batch_size = batch_sizes[0]
    now = common.utcnow()
    started = time.perf_counter()
    vids = common.visitor_ids(args.visitors, args.seed)
    events = common.clean_events(common.raw_events(args.events, vids, args.seed, now, span), now)
    # A flusher sees events roughly in the order they happened.
    events.sort(key=lambda e: e["occurred_at"])
    seen: dict[str, tuple[datetime, datetime]] = {}
    for e in events:
        when = datetime.fromisoformat(e["occurred_at"])
        first, last = seen.get(e["visitor"], (when, when))
        seen[e["visitor"]] = (min(first, when), max(last, when))
    print(
        f"Generated {len(events):,} clean events of {len(seen):,} visitors over {args.span} "
        f"({span}) in {time.perf_counter() - started:.1f}s."
    )
    if args.phases:
        return phases(events, batch_size, args.repeats)

    # How long each flusher batch keeps its visitor rows locked: from the start of the
    # visitor upsert (where the locks are taken) to the end of the commit.
    upsert = ingest._upsert_visitors
    upsert_started: list[float] = []
    holds: dict[int, list[float]] = {size: [] for size in batch_sizes}

    def timed_upsert(*args, **kwargs):
        upsert_started.append(time.perf_counter())
        return upsert(*args, **kwargs)

    ingest._upsert_visitors = timed_upsert

    def app_batched(size: int) -> int:
        written = 0
        for start in range(0, len(events), size):
            written += write_events(events[start : start + size], batch_key=uuid.uuid4().hex)
            holds[size].append(time.perf_counter() - upsert_started[-1])
        return written

    def app_single() -> int:
        return write_events(events)

    def precreate_visitors() -> None:
        Visitor.objects.bulk_create(
            [Visitor(id=v, first_seen=f, last_seen=la) for v, (f, la) in seen.items()],
            batch_size=2000,
        )

    def peer() -> int:
        rows = [
            Event(
                visitor_id=e["visitor"],
                kind=e["kind"],
                item_key=e["item"],
                category_key=e["category"],
                value=e["value"],
                properties=e["properties"],
                occurred_at=datetime.fromisoformat(e["occurred_at"]),
            )
            for e in events
        ]
        return len(Event.objects.bulk_create(rows, batch_size=args.peer_batch_size))

    def stale_last_seen() -> int:
        from django.db import connection

        with connection.cursor() as cursor:
            cursor.execute(
                f"SELECT count(*) FROM {Visitor._meta.db_table} v JOIN (SELECT visitor_id, "
                f"max(occurred_at) AS latest FROM {Event._meta.db_table} GROUP BY visitor_id) e "
                "ON e.visitor_id = v.id WHERE v.last_seen < e.latest - interval '5 minutes' "
                "OR v.last_seen > e.latest"
            )
            return cursor.fetchone()[0]

    def app_copy_only() -> int:
        # The COPY step alone (a private function), on the peer's terms: visitors exist.
        visitors, times = ingest._checked_columns(events)
        with transaction.atomic():
            ingest._copy_rows(ingest._rows(events, visitors, times), "default")
        return len(events)

    variants = {
        **{
            f"app write_events x {size}": (functools.partial(app_batched, size), None)
            for size in batch_sizes
        },
        "app write_events x 1": (app_single, None),
        "app COPY step only (visitors pre-created)": (app_copy_only, precreate_visitors),
        f"peer bulk_create(batch_size={args.peer_batch_size})": (peer, precreate_visitors),
    }
    names = list(variants)
    times: dict[str, list[float]] = {name: [] for name in names}
    for rep in range(args.repeats):
        order = names if rep % 2 == 0 else names[::-1]
        for name in order:
            run, prepare = variants[name]
            common.truncate()
            if prepare:
                prepare()
            gc.collect()
            t0 = time.perf_counter()
            written = run()
            elapsed = time.perf_counter() - t0
            n_events, n_visitors = common.counts()
            if written != len(events) or n_events != len(events) or n_visitors != len(seen):
                print(
                    f"FAILED {name}: wrote {written}, {n_events} events and {n_visitors} "
                    f"visitors in the database; expected {len(events)} and {len(seen)}."
                )
                return 1
            if prepare is None and (stale := stale_last_seen()):
                print(
                    f"  warning: {stale} visitors' last_seen is more than 5 minutes behind "
                    "(or after) their latest event's time"
                )
            times[name].append(elapsed)
            print(f"  run {rep + 1} {name}: {elapsed:.2f}s, {len(events) / elapsed:,.0f} rows/s")
    common.truncate()

    peer_name = names[-1]
    peer_best = len(events) / min(times[peer_name])
    peer_median = len(events) / common.median(times[peer_name])
    rows = []
    for name in names:
        best = len(events) / min(times[name])
        med = len(events) / common.median(times[name])
        rows.append(
            [
                name,
                " ".join(f"{t:.2f}" for t in times[name]),
                f"{best:,.0f}",
                f"{med:,.0f}",
                f"{best / peer_best:.1f}x",
                f"{med / peer_median:.1f}x",
            ]
        )
    print()
    print(
        f"Bulk ingest of {len(events):,} events ({len(seen):,} visitors, span {args.span}) "
        f"into PostgreSQL, best and median of {args.repeats}; INGEST BATCH_SIZE "
        f"{aigc_settings.INGEST['BATCH_SIZE']} (the default)."
    )
    print(common.machine())
    print(
        "The app upserts its visitors inside the timing; the peer's visitors were created "
        "before its timing started."
    )
    print(
        common.table(
            ["variant", "runs (s)", "best rows/s", "median rows/s", "vs peer best", "vs median"],
            rows,
        )
    )
    for size, held in holds.items():
        print(
            f"Visitor rows locked per flusher batch of {size} (upsert start to commit), "
            f"{len(held)} batches: median {common.median(held) * 1000:.0f} ms, "
            f"max {max(held) * 1000:.0f} ms."
        )
    flusher = len(events) / common.median(times[names[0]]) / peer_median
    verdict = "met" if flusher >= GOAL else "NOT met"
    print(
        f"Goal: the flusher's path (write_events x {batch_size}) >= {GOAL:.0f}x the peer's "
        f"rows/s: {flusher:.1f}x (median) -> {verdict}."
    )
    return 0


def phases(events: list[dict], batch_size: int, repeats: int) -> int:
    """Time each step of ``write_events`` per flusher batch, summed over the batches.

    The real calls are timed: ``write_events``'s private step functions are wrapped with a
    clock for the run; what the steps leave of each call is the IngestBatch row, the
    transaction and the commit.
    """
    from aigc_django.tracking import ingest

    steps = {
        "checks": "_checked_columns",
        "event id floor": "_event_id_floor",
        "COPY": "_copy_rows",
        "visitor upsert": "_upsert_visitors",
    }
    spent: dict[str, float] = {}

    def timed(step: str, function):
        def call(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                spent[step] += time.perf_counter() - t0

        return call

    originals = {name: getattr(ingest, name) for name in steps.values()}
    for step, name in steps.items():
        setattr(ingest, name, timed(step, originals[name]))
    rest = "IngestBatch row, commit"
    runs: list[dict[str, float]] = []
    try:
        for rep in range(repeats):
            common.truncate()
            gc.collect()
            spent.clear()
            spent.update(dict.fromkeys(steps, 0.0))
            total = 0.0
            for start in range(0, len(events), batch_size):
                t0 = time.perf_counter()
                ingest.write_events(events[start : start + batch_size], batch_key=uuid.uuid4().hex)
                total += time.perf_counter() - t0
            runs.append({**spent, rest: total - sum(spent.values()), "total": total})
            print(f"  run {rep + 1}: {total:.2f}s")
    finally:
        for name, function in originals.items():
            setattr(ingest, name, function)
    common.truncate()
    print()
    print(
        f"Steps of the flusher's path, summed over {-(-len(events) // batch_size)} "
        f"batches of {batch_size}:"
    )
    rows = [[step, " ".join(f"{run[step]:.2f}" for run in runs)] for step in runs[0]]
    print(common.table(["step", "runs (s)"], rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
