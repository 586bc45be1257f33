"""Full profile rebuild (``build_profiles()``) on PostgreSQL: time per stage and peak memory
as a simulated shop grows.

    .venv/bin/python benchmarks/rebuild.py [--sizes 10000,100000] [--items-per-category 250]
        [--keep-loaded] [--load-only]

For each size (visitors) the shop is simulated (``aigc_django.profiles.simulator``) in a
fresh database ``--db`` (dropped and recreated), its events written with the app's
``write_events`` in chunks of ``--load-chunk`` before any timing; then a separate child
process runs ``build_profiles()`` (features + factorization + clustering + rules + writing
profiles and segments) at the app's default ``PROFILES`` and reports the stages'
``BuildReport.timings`` and its peak resident memory (``VmHWM``; also ``ru_maxrss``). The
build child does nothing else, so its peak is the rebuild's (plus Django and torch, whose
baseline is reported too).

The simulator makes visitors in chunks of ``--chunk-visitors`` (seeds ``--seed``,
``--seed`` + 1, ...) over one shared catalogue of 8 categories x ``--items-per-category``
items, so that generating 100k visitors does not hold millions of event dicts at once; the
personas' favourite categories are the same in every chunk, their item likings are redrawn.
There is no peer: the output is the growth curve (time and memory vs visitors and events).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import common

STAGES = ["read events", "factorization", "clustering", "rules", "write"]


def vm_hwm_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def machine_line() -> str:
    import platform

    import torch

    mem = Path("/proc/meminfo").read_text().splitlines()[0].split()[1]
    return (
        f"nproc={os.cpu_count()}, RAM {int(mem) / 2**20:.0f} GiB, Python "
        f"{platform.python_version()}, torch {torch.__version__}, PostgreSQL on 127.0.0.1"
    )


LOADED_TABLE = "bench_rebuild_loaded"


def loaded_before(args: argparse.Namespace) -> dict | None:
    """With --keep-loaded: what an earlier load of the same shop left in its database."""
    import psycopg

    try:
        with psycopg.connect(dbname=args.db, host="127.0.0.1", user="postgres") as conn:
            found = conn.execute(f"SELECT shop, stats FROM {LOADED_TABLE}").fetchone()
    except psycopg.Error:
        return None
    return found[1] if found and found[0] == shop_of(args) else None


def shop_of(args: argparse.Namespace) -> dict:
    return {
        "size": args.size,
        "items_per_category": args.items_per_category,
        "personas": args.personas,
        "chunk_visitors": args.chunk_visitors,
        "seed": args.seed,
    }


def child_load(args: argparse.Namespace) -> dict:
    if args.keep_loaded and (stats := loaded_before(args)):
        return {**stats, "reused": True}
    common.setup_django(db=args.db, mode="direct", settings=common.PROFILE_SETTINGS)
    from aigc_django.profiles.simulator import DEFAULT_CATEGORIES, make_items, simulate
    from aigc_django.tracking.ingest import write_events

    now = common.utcnow()
    items = make_items(DEFAULT_CATEGORIES, args.items_per_category, random.Random(args.seed))
    events = gen_s = write_s = 0.0
    done, chunk_no = 0, 0
    while done < args.size:
        n = min(args.chunk_visitors, args.size - done)
        t0 = time.perf_counter()
        sim = simulate(
            visitors=n, personas=args.personas, items=items, seed=args.seed + chunk_no, now=now
        )
        batch = sorted(sim.events, key=lambda e: e["occurred_at"])
        del sim
        gen_s += time.perf_counter() - t0
        t0 = time.perf_counter()
        for start in range(0, len(batch), args.load_chunk):
            write_events(batch[start : start + args.load_chunk])
        write_s += time.perf_counter() - t0
        events += len(batch)
        done += n
        chunk_no += 1
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE")
        cursor.execute("SELECT pg_database_size(current_database())")
        db_bytes = cursor.fetchone()[0]
    stats = {
        "events": int(events),
        "generate_s": gen_s,
        "write_s": write_s,
        "db_mib": db_bytes / 2**20,
        "now": now.isoformat(),
    }
    if args.keep_loaded:
        with connection.cursor() as cursor:
            cursor.execute(f"CREATE TABLE {LOADED_TABLE} (shop jsonb, stats jsonb)")
            cursor.execute(
                f"INSERT INTO {LOADED_TABLE} VALUES (%s, %s)",
                [json.dumps(shop_of(args)), json.dumps(stats)],
            )
    return stats


def child_build(args: argparse.Namespace) -> dict:
    # The database exists and is loaded: set Django up without recreating it.
    os.environ["AIGC_BENCH_DB"] = args.db
    os.environ["DJANGO_SETTINGS_MODULE"] = common.PROFILE_SETTINGS
    import django

    django.setup()
    import torch
    from django.db import connection

    from aigc_django.models import ModelArtifact, Profile, Segment
    from aigc_django.profiles.build import build_profiles

    if args.keep_loaded:  # a reused database: start from no profiles, as a fresh one does
        tables = ", ".join(m._meta.db_table for m in (Profile, Segment, ModelArtifact))
        with connection.cursor() as cursor:
            cursor.execute(f"TRUNCATE {tables} CASCADE")
    torch.set_num_threads(args.threads)
    baseline = vm_hwm_kib()
    t0 = time.perf_counter()
    report = build_profiles()
    total = time.perf_counter() - t0
    return {
        "visitors": report.visitors,
        "eligible": report.eligible,
        "events": report.events,
        "items": report.items,
        "k": report.k,
        "device": report.device,
        "timings": report.timings,
        "total_s": total,
        "baseline_mib": baseline / 1024,
        "peak_mib": vm_hwm_kib() / 1024,
        "maxrss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def run_child(kind: str, size: int, args: argparse.Namespace) -> dict:
    cmd = [
        sys.executable,
        __file__,
        "--child",
        kind,
        "--size",
        str(size),
        "--db",
        args.db,
        "--items-per-category",
        str(args.items_per_category),
        "--personas",
        str(args.personas),
        "--chunk-visitors",
        str(args.chunk_visitors),
        "--load-chunk",
        str(args.load_chunk),
        "--seed",
        str(args.seed),
        "--threads",
        str(args.threads),
        *(["--keep-loaded"] if args.keep_loaded else []),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout + proc.stderr)
        raise SystemExit(f"child {kind} {size} failed with {proc.returncode}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10000,100000", help="visitors, comma-separated")
    parser.add_argument("--items-per-category", type=int, default=250)
    parser.add_argument("--personas", type=int, default=8)
    parser.add_argument("--chunk-visitors", type=int, default=10_000)
    parser.add_argument("--load-chunk", type=int, default=20_000, help="events per write_events")
    parser.add_argument("--threads", type=int, default=2, help="torch threads in the build")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--db", default="aigc_bench_rebuild", help="PostgreSQL (recreated)")
    parser.add_argument(
        "--keep-loaded",
        action="store_true",
        help="one database per size (--db + _SIZE), kept and reused by later runs with the "
        "same shop, so that a large shop is simulated and written once",
    )
    parser.add_argument(
        "--load-only", action="store_true", help="simulate and write the shops, build nothing"
    )
    parser.add_argument("--child", choices=["load", "build"], help=argparse.SUPPRESS)
    parser.add_argument("--size", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child:
        out = (child_load if args.child == "load" else child_build)(args)
        print(json.dumps(out))
        return 0

    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    results = []
    base_db = args.db
    for size in sizes:
        if args.keep_loaded:
            args.db = f"{base_db}_{size}"
        loaded = run_child("load", size, args)
        print(
            f"{size:,} visitors: {loaded['events']:,} events simulated in "
            f"{loaded['generate_s']:.0f}s, written with write_events in {loaded['write_s']:.0f}s "
            f"({loaded['events'] / loaded['write_s']:,.0f} rows/s); database "
            f"{loaded['db_mib']:,.0f} MiB"
            + (" (loaded by an earlier run, reused)." if loaded.get("reused") else "."),
            flush=True,
        )
        if args.load_only:
            continue
        t0 = time.perf_counter()
        built = run_child("build", size, args)
        wall = time.perf_counter() - t0
        print(
            f"  build_profiles: {built['total_s']:.1f}s ({wall:.1f}s with process start), "
            f"{built['timings']}, k={built['k']}, eligible {built['eligible']:,}, "
            f"items {built['items']:,}, peak RSS {built['peak_mib']:,.0f} MiB "
            f"(baseline {built['baseline_mib']:,.0f} MiB)",
            flush=True,
        )
        results.append((size, loaded, built))

    if args.load_only:
        return 0
    print()
    print(
        f"Full rebuild (build_profiles) on PostgreSQL, default PROFILES, device "
        f"{results[0][2]['device']}, torch threads {args.threads}; 8 categories x "
        f"{args.items_per_category} items, {args.personas} personas."
    )
    print(machine_line())
    headers = ["visitors", "events", "items", "k", *[f"{s} s" for s in STAGES], "total s"]
    headers += ["peak RSS MiB", "DB MiB"]
    rows = []
    for size, loaded, built in results:
        rows.append(
            [
                f"{size:,}",
                f"{built['events']:,}",
                f"{built['items']:,}",
                built["k"],
                *[f"{built['timings'].get(s, 0):.1f}" for s in STAGES],
                f"{built['total_s']:.1f}",
                f"{built['peak_mib']:,.0f}",
                f"{loaded['db_mib']:,.0f}",
            ]
        )
    print(common.table(headers, rows))
    if len(results) >= 2:
        (s0, _, b0), (s1, _, b1) = results[0], results[-1]
        above = (b1["peak_mib"] - b1["baseline_mib"]) / max(b0["peak_mib"] - b0["baseline_mib"], 1)
        growth = [
            f"visitors x{s1 / s0:.1f}",
            f"events x{b1['events'] / b0['events']:.1f}",
            *[
                f"{s} x{b1['timings'].get(s, 0) / max(b0['timings'].get(s, 0), 1e-3):.1f}"
                for s in STAGES
            ],
            f"total x{b1['total_s'] / b0['total_s']:.1f}",
            f"peak RSS x{b1['peak_mib'] / b0['peak_mib']:.1f} (above baseline x{above:.1f})",
        ]
        print(f"Growth {s0:,} -> {s1:,}: " + ", ".join(growth))
        per_event_s = b1["total_s"] / b1["events"]
        per_event_mib = (b1["peak_mib"] - b1["baseline_mib"]) / b1["events"]
        if s1 >= 1_000_000:
            print(
                f"Per event at {s1:,}: {per_event_s * 1e6:.1f} us and "
                f"{per_event_mib * 2**20:,.0f} bytes above baseline (measured)."
            )
        else:
            print(
                f"Per event at {s1:,}: {per_event_s * 1e6:.1f} us and "
                f"{per_event_mib * 2**20:,.0f} bytes above baseline. EXTRAPOLATION (linear in "
                f"events, not measured) to 1,000,000 visitors "
                f"(~{b1['events'] / s1 * 1e6:,.0f} events): "
                f"~{per_event_s * b1['events'] / s1 * 1e6 / 60:.0f} min and "
                f"~{(b1['baseline_mib'] + per_event_mib * b1['events'] / s1 * 1e6) / 1024:.1f} GiB."
            )
    print("No peer: this benchmark reports the growth curve only.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
