"""Event validation: the app's ``clean_event`` vs the peer's DRF serializer, per event.

    .venv/bin/python benchmarks/clean_event.py [--events 30000] [--batch 100] [--repeats 5]

The same raw events (those ``ingest_http.py`` posts), in batches of ``--batch``, are
validated by:

* ``app clean_event, clean forms``: ``clean_event`` on events whose visitor ids and times
  are already in their clean form (lower-case UUIDs, UTC times to the microsecond), which
  it keeps as they are;
* ``app clean_event, other forms``: the same events with upper-case ids and times with a
  ``+02:00`` offset, which it converts;
* ``peer serializer``: ``EventSerializer(data=batch, many=True).is_valid()``, the
  serializer of the HTTP benchmark's peer endpoint (``benchmarks/benchsite/views.py``).

Each variant runs ``--repeats`` times in alternating order; the best time per event counts.
"""

from __future__ import annotations

import argparse
import sys
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import common


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=30_000)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    common.setup_django()

    from aigc_django.tracking.events import clean_event
    from benchmarks.benchsite.views import EventSerializer

    now = common.utcnow()
    raws = common.raw_events(args.events, common.visitor_ids(20_000, args.seed), args.seed, now)
    plus_two = timezone(timedelta(hours=2))
    others = [
        {
            **raw,
            "visitor": str(uuid.UUID(raw["visitor"])).upper(),
            "occurred_at": datetime.fromisoformat(raw["occurred_at"])
            .astimezone(plus_two)
            .isoformat(),
        }
        for raw in raws
    ]
    batches = {
        "clean": [raws[i : i + args.batch] for i in range(0, len(raws), args.batch)],
        "other": [others[i : i + args.batch] for i in range(0, len(others), args.batch)],
    }
    # Both shapes give the same clean events.
    assert [
        clean_event(r, visitor_id=None, allow_visitor_field=True, now=now) for r in raws[:50]
    ] == [clean_event(r, visitor_id=None, allow_visitor_field=True, now=now) for r in others[:50]]

    def app(shape: str) -> None:
        for batch in batches[shape]:
            for raw in batch:
                clean_event(raw, visitor_id=None, allow_visitor_field=True, now=now)

    def peer() -> None:
        for batch in batches["clean"]:
            serializer = EventSerializer(data=batch, many=True)
            assert serializer.is_valid(), serializer.errors

    variants = {
        "app clean_event, clean forms": lambda: app("clean"),
        "app clean_event, other forms": lambda: app("other"),
        "peer serializer (many=True)": peer,
    }
    names = list(variants)
    times: dict[str, list[float]] = {name: [] for name in names}
    for rep in range(args.repeats):
        for name in names if rep % 2 == 0 else names[::-1]:
            started = time.perf_counter()
            variants[name]()
            times[name].append((time.perf_counter() - started) / len(raws) * 1e6)
    best = {name: min(values) for name, values in times.items()}
    peer_name = names[-1]
    print(
        f"Validation of {len(raws):,} events in batches of {args.batch}, best of "
        f"{args.repeats} runs, microseconds per event."
    )
    print(common.machine())
    print(
        common.table(
            ["variant", "runs (us/event)", "best", "vs peer", "vs clean forms"],
            [
                [
                    name,
                    " ".join(f"{t:.1f}" for t in times[name]),
                    f"{best[name]:.1f}",
                    f"{best[peer_name] / best[name]:.1f}x faster",
                    f"{best[name] / best[names[0]]:.2f}x the time",
                ]
                for name in names
            ],
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
