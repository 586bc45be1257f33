"""HTTP ingest: ``POST /aigc/api/events/`` vs a plain DRF + ORM endpoint, under gunicorn.

    .venv/bin/python benchmarks/ingest_http.py [--seconds 6] [--rounds 3] [--clients 4]
        [--batch 100] [--modes direct,buffered] [--worker-class sync] [--workers 2]
        [--span 30d]

gunicorn serves the benchmark site (benchmarks/benchsite) on 127.0.0.1: the app's endpoint
(token auth, ``AIGC["INGEST"]["MODE"]`` "direct" or "buffered" with a Redis buffer) and the
peer (benchmarks/benchsite/views.py: DRF serializer validation, then ``get_or_create`` per
visitor and ``Event.objects.create`` per event in one transaction). ``--clients`` threads
with keep-alive ``http.client`` connections POST pre-encoded batches of ``--batch`` events
for ``--seconds``, to each endpoint in turn (the order alternates each round). The visitors
of the request bodies are created before the rounds (returning visitors: the steady state),
events are emptied before each segment, and after it the row count must equal the events
accepted. In
buffered mode the accepted events are then written with ``flush_buffer()`` (timed apart,
as "drain") before the count. gunicorn is stopped (its process group) even on errors.
The events' times spread over ``--span`` (default 30 days), in time order across the bodies.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import common

GOAL = 10.0
APP = "app  POST /aigc/api/events/"
PEER = "peer POST /peer/events/"
PATHS = {APP: "/aigc/api/events/", PEER: "/peer/events/"}
STATUS = {APP: 202, PEER: 201}


@dataclass
class Segment:
    events: int = 0
    requests: int = 0
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.events / self.seconds if self.seconds else 0.0


# ---------------------------------------------------------------------------------- server


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(args: argparse.Namespace, mode: str, port: int, log) -> subprocess.Popen:
    env = dict(
        os.environ,
        DJANGO_SETTINGS_MODULE=common.SETTINGS,
        AIGC_BENCH_INGEST_MODE=mode,
        AIGC_BENCH_DB=args.db,
        PYTHONPATH=os.pathsep.join(filter(None, [str(common.ROOT), os.environ.get("PYTHONPATH")])),
    )
    cmd = [
        sys.executable,
        "-m",
        "gunicorn",
        args.wsgi,
        "--bind",
        f"127.0.0.1:{port}",
        "--workers",
        str(args.workers),
        "--worker-class",
        args.worker_class,
        "--log-level",
        "warning",
        "--graceful-timeout",
        "10",
    ]
    if args.worker_class == "gthread":
        cmd += ["--threads", str(args.threads)]
    proc = subprocess.Popen(
        cmd, cwd=common.ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"gunicorn exited with {proc.returncode}; see its log below.")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            conn.request("GET", PATHS[APP])
            status = conn.getresponse().status
            conn.close()
            if status == 405:  # the app answers: Django is loaded
                return proc
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError("gunicorn did not answer within 60 seconds.")


def stop_server(proc: subprocess.Popen | None) -> None:
    """SIGTERM the whole process group (graceful), then SIGKILL what is left."""
    if proc is None:
        return
    try:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)
        # Workers that outlived the arbiter.
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


# ------------------------------------------------------------------------------------ load


def load(port: int, name: str, payloads: list[tuple[bytes, int]], clients: int, seconds: float):
    """``clients`` threads POST payloads to one endpoint for ``seconds``."""
    segment = Segment()
    lock = threading.Lock()
    start = threading.Barrier(clients + 1)
    headers = {
        "Content-Type": "application/json",
        "Accept": "application/json",
        "Authorization": f"Token {TOKEN}",
        "User-Agent": "shop-backend/1.0 (aigc benchmark)",
    }
    path, expected = PATHS[name], STATUS[name]
    deadline = 0.0

    def client(index: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        latencies, errors, events, requests = [], [], 0, 0
        i = index
        start.wait()
        while time.perf_counter() < deadline:
            body, n = payloads[i % len(payloads)]
            i += clients
            t0 = time.perf_counter()
            try:
                conn.request("POST", path, body=body, headers=headers)
                response = conn.getresponse()
                data = response.read()
            except (OSError, http.client.HTTPException) as exc:
                errors.append(f"{type(exc).__name__}: {exc}")
                conn.close()
                continue
            elapsed = time.perf_counter() - t0
            requests += 1
            if response.status == expected:
                body_json = json.loads(data)
                stored = body_json.get("accepted", body_json.get("created"))
                events += stored
                latencies.append(elapsed)
                if stored != n:
                    errors.append(f"stored {stored} of {n}")
            else:
                errors.append(f"HTTP {response.status}: {data[:160]!r}")
        conn.close()
        with lock:
            segment.latencies += latencies
            segment.errors += errors
            segment.events += events
            segment.requests += requests

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(clients)]
    for thread in threads:
        thread.start()
    t_start = time.perf_counter()
    deadline = t_start + seconds
    start.wait()
    for thread in threads:
        thread.join()
    segment.seconds = time.perf_counter() - t_start
    return segment


# ------------------------------------------------------------------------------------ main

TOKEN = ""


def drain_redis_extras(everything: bool = False) -> None:
    """Drop the flush-task messages that no worker consumed and the flush flag; with
    ``everything``, the whole buffer too (what an interrupted run left)."""
    import redis
    from django.conf import settings

    client = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=5)
    prefix = settings.AIGC["INGEST"]["REDIS_KEY_PREFIX"]
    pattern = f"{prefix}:*" if everything else f"{prefix}:flush-scheduled"
    keys = [*client.scan_iter(match=pattern), *client.scan_iter(match="_kombu.binding*"), b"aigc"]
    client.delete(*keys)


def buffer_empty() -> bool:
    from aigc_django.tracking.ingest import get_buffer

    buffer = get_buffer()
    return len(buffer) == 0 and not buffer.client.zcard(buffer.taken)


def create_visitors(payloads: list[tuple[bytes, int]]) -> None:
    from datetime import datetime

    from aigc_django.models.tracking import Visitor

    seen: dict[str, tuple[datetime, datetime]] = {}
    for body, _ in payloads:
        for event in json.loads(body):
            when = datetime.fromisoformat(event["occurred_at"])
            first, last = seen.get(event["visitor"], (when, when))
            seen[event["visitor"]] = (min(first, when), max(last, when))
    Visitor.objects.bulk_create(
        [Visitor(id=v, first_seen=f, last_seen=la) for v, (f, la) in seen.items()],
        batch_size=2000,
    )
    # Planner statistics, as autovacuum keeps them on a live database (it would get to a
    # table this new only after a minute or so): without them the app's merged-visitor
    # check reads the whole visitor table instead of its partial index.
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {Visitor._meta.db_table}")


def drain() -> tuple[int, float]:
    from aigc_django.tracking.ingest import flush_buffer

    t0 = time.perf_counter()
    written = flush_buffer()
    return written, time.perf_counter() - t0


def run_mode(args, mode: str, payloads) -> tuple[dict[str, list[Segment]], list[tuple]]:
    port = free_port()
    segments: dict[str, list[Segment]] = {APP: [], PEER: []}
    drains: list[tuple[int, float, float]] = []  # (events, drain seconds, load seconds)
    proc = None
    with tempfile.NamedTemporaryFile("w+", prefix="gunicorn-", suffix=".log") as log:
        try:
            proc = start_server(args, mode, port, log)
            print(
                f"[{mode}] gunicorn on 127.0.0.1:{port}: {args.workers} {args.worker_class} "
                f"workers"
                + (f" x {args.threads} threads" if args.worker_class == "gthread" else "")
            )
            # Steady state: every visitor of the payloads exists already (returning visitors),
            # so the peer's get_or_create is one SELECT per visitor.
            common.truncate()
            create_visitors(payloads)
            for name in (APP, PEER):  # warm both up: imports, connections, caches
                load(port, name, payloads, args.clients, args.warmup)
            if mode == "buffered":
                drain()
                drain_redis_extras()
            for rnd in range(args.rounds):
                order = [APP, PEER] if rnd % 2 == 0 else [PEER, APP]
                for name in order:
                    common.truncate(visitors=False)
                    segment = load(port, name, payloads, args.clients, args.seconds)
                    note = ""
                    if mode == "buffered" and name == APP:
                        written, took = drain()
                        drain_redis_extras()
                        if not buffer_empty():
                            raise RuntimeError("The Redis buffer is not empty after draining.")
                        drains.append((written, took, segment.seconds))
                        note = f", drained {written:,} in {took:.1f}s"
                    stored, _ = common.counts()
                    print(
                        f"  round {rnd + 1} {name}: {segment.events:,} events in "
                        f"{segment.seconds:.1f}s = {segment.rate:,.0f}/s, "
                        f"{len(segment.errors)} errors{note}; {stored:,} rows stored"
                    )
                    if stored != segment.events:
                        raise RuntimeError(
                            f"{name}: {stored} rows stored but {segment.events} events accepted."
                        )
                    for error in segment.errors[:3]:
                        print(f"    error: {error}")
                    segments[name].append(segment)
        except BaseException:
            log.flush()
            log.seek(0)
            tail = log.read()[-3000:]
            if tail:
                print(f"--- gunicorn log (tail) ---\n{tail}\n---", file=sys.stderr)
            raise
        finally:
            stop_server(proc)
    common.truncate()
    return segments, drains


def report(mode: str, args, segments: dict[str, list[Segment]], drains: list[tuple]) -> dict:
    def stats(name: str) -> list:
        runs = segments[name]
        rates = [s.rate for s in runs]
        latencies = [t for s in runs for t in s.latencies]
        return [
            common.median(rates),
            max(rates),
            common.percentile(latencies, 50) * 1000,
            common.percentile(latencies, 95) * 1000,
            sum(s.requests for s in runs),
            sum(len(s.errors) for s in runs),
        ]

    app, peer = stats(APP), stats(PEER)
    rows = [
        [
            name,
            f"{s[0]:,.0f}",
            f"{s[1]:,.0f}",
            f"{s[2]:.1f}",
            f"{s[3]:.1f}",
            f"{s[4]:,}",
            s[5],
        ]
        for name, s in ((APP, app), (PEER, peer))
    ]
    ratio = app[0] / peer[0] if peer[0] else float("inf")
    accepted = "accepted " if mode == "buffered" else ""
    print()
    print(
        f"HTTP ingest, INGEST MODE {mode!r}: {args.clients} keep-alive clients, batches of "
        f"{args.batch} events, {args.rounds} rounds of {args.seconds:g}s per endpoint; "
        f"gunicorn {args.workers} {args.worker_class} workers"
        + (f" x {args.threads} threads" if args.worker_class == "gthread" else "")
        + "."
    )
    print(
        common.table(
            [
                "endpoint",
                f"{accepted}events/s (median)",
                "best",
                "p50 ms/batch",
                "p95 ms/batch",
                "requests",
                "errors",
            ],
            rows,
        )
    )
    line = (
        f"app/peer events/s: {ratio:.1f}x (median), {app[1] / peer[1]:.1f}x (best); "
        f"p50 latency peer/app: {peer[2] / app[2]:.1f}x"
    )
    print(line)
    result = {"accepted": ratio}
    if drains:
        drain_rate = common.median([n / took for n, took, _ in drains])
        end_to_end = common.median([n / (took + load) for n, took, load in drains])
        result["end-to-end"] = end_to_end / peer[0]
        print(
            f"Buffered events written by flush_buffer() after each app segment: "
            f"{drain_rate:,.0f} rows/s (median). End to end (accepted events / (load + drain "
            f"seconds)): {end_to_end:,.0f} events/s = {result['end-to-end']:.1f}x the peer."
        )
    return result


def main() -> int:
    global TOKEN
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=6.0, help="per endpoint per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--warmup", type=float, default=1.5, help="seconds per endpoint")
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--batch", type=int, default=100, help="events per request")
    parser.add_argument("--payloads", type=int, default=300, help="distinct request bodies")
    parser.add_argument("--visitors", type=int, default=20_000)
    parser.add_argument("--modes", default="direct,buffered")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--worker-class", choices=["sync", "gthread"], default="sync")
    parser.add_argument("--threads", type=int, default=4, help="per gthread worker")
    parser.add_argument("--db", default="aigc_bench", help="PostgreSQL database (created)")
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument(
        "--span", default="30d", help="window of the events' occurred_at: 1h, 30d, 90m, ..."
    )
    parser.add_argument(
        "--wsgi",
        default="benchmarks.benchsite.wsgi:application",
        help="the WSGI app gunicorn serves (to try a patched build; on PYTHONPATH)",
    )
    args = parser.parse_args()
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]

    # SIGTERM runs the finally blocks too, so gunicorn never outlives the benchmark.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    common.setup_django(db=args.db)
    from django.conf import settings

    TOKEN = settings.BENCH_TOKEN
    drain_redis_extras(everything=True)
    now = common.utcnow()
    vids = common.visitor_ids(args.visitors, args.seed)
    raws = common.raw_events(
        args.payloads * args.batch, vids, args.seed, now, common.parse_span(args.span)
    )
    payloads = [
        (json.dumps(raws[i : i + args.batch]).encode(), len(raws[i : i + args.batch]))
        for i in range(0, len(raws), args.batch)
    ]
    size = sum(len(b) for b, _ in payloads) / len(payloads)
    print(
        f"{len(payloads)} request bodies of {args.batch} events ({size / 1024:.1f} KiB each) "
        f"from {args.visitors:,} visitors."
    )
    print(common.machine())
    ratios = {}
    for mode in modes:
        segments, drains = run_mode(args, mode, payloads)
        ratios[mode] = report(mode, args, segments, drains)
    print()
    for mode, result in ratios.items():
        for what, ratio in result.items():
            verdict = "met" if ratio >= GOAL else "NOT met"
            label = f"mode {mode!r}" + (f", {what}" if mode == "buffered" else "")
            print(f"Goal: app >= {GOAL:.0f}x peer events/s, {label}: {ratio:.1f}x -> {verdict}.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
