"""Shared helpers: database set-up, synthetic events, counting and tables."""

from __future__ import annotations

import os
import platform
import random
import statistics
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SETTINGS = "benchmarks.benchsite.settings"
PROFILE_SETTINGS = "benchmarks.benchsite.settings_profiles"

# Rough shares of event kinds on a shop (percent).
KINDS = [
    ("page_view", 34),
    ("product_view", 28),
    ("impression", 10),
    ("category_view", 8),
    ("click", 6),
    ("search", 5),
    ("add_to_cart", 5),
    ("remove_from_cart", 1),
    ("purchase", 3),
]
CATEGORIES = [
    f"{a}-{b}"
    for a in ("women", "men", "kids", "home", "sport")
    for b in ("shoes", "shirts", "trousers", "bags", "jackets", "lamps", "bikes", "toys", "tea")
]
PRODUCTS = 5000
REFERRERS = ["", "https://www.google.com/", "https://www.bing.com/", "https://instagram.com/"]
WORDS = ["red", "running", "shoes", "linen", "shirt", "summer", "lamp", "bike", "green", "wool"]
SLOTS = ["home-hero", "category-top", "product-side", "cart-upsell"]


def setup_django(db: str | None = None, mode: str | None = None, settings: str = SETTINGS) -> None:
    """Create the benchmark database when missing, set Django up and migrate."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    if db:
        os.environ["AIGC_BENCH_DB"] = db
    if mode:
        os.environ["AIGC_BENCH_INGEST_MODE"] = mode
    os.environ["DJANGO_SETTINGS_MODULE"] = settings
    ensure_database(os.environ.get("AIGC_BENCH_DB", "aigc_bench"))

    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0, interactive=False)


def configure_throwaway_site(
    database: str,
    apps: list[str],
    *,
    migrate: bool = True,
    run_syncdb: bool = False,
    **settings: Any,
) -> None:
    """Configure Django in-process for a throwaway SQLite site, set it up and migrate.

    ``database`` is the SQLite file; ``apps`` come after ``django.contrib.auth`` and
    ``django.contrib.contenttypes`` in ``INSTALLED_APPS``; ``settings`` are the script's
    own (``AIGC``, ``MEDIA_ROOT``...). ``run_syncdb`` creates the tables of apps without
    migrations (the catalog apps); ``migrate=False`` leaves migrating to the caller.
    """
    import django
    from django.conf import settings as django_settings
    from django.core.management import call_command

    django_settings.configure(
        SECRET_KEY="benchmark-only",
        USE_TZ=True,
        DEFAULT_AUTO_FIELD="django.db.models.BigAutoField",
        INSTALLED_APPS=["django.contrib.auth", "django.contrib.contenttypes", *apps],
        DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": database}},
        **settings,
    )
    django.setup()
    if migrate:
        call_command("migrate", verbosity=0, interactive=False, run_syncdb=run_syncdb)


def ensure_database(name: str) -> None:
    """Create the database; one named aigc_bench* is dropped and created afresh.

    A fresh database follows the app's migrations even when they were edited in place.
    """
    import psycopg
    from psycopg import sql

    params = {
        "host": os.environ.get("AIGC_BENCH_PG_HOST", "127.0.0.1"),
        "port": os.environ.get("AIGC_BENCH_PG_PORT", "5432"),
        "user": os.environ.get("AIGC_BENCH_PG_USER", "postgres"),
    }
    with psycopg.connect(dbname="postgres", autocommit=True, **params) as conn:
        if name.startswith("aigc_bench"):
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
        if not exists:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def truncate(visitors: bool = True) -> None:
    """Empty the tracking tables (events, ingest batches and visitors unless told not to),
    then CHECKPOINT so that every run starts with the same amount of unwritten WAL."""
    from django.db import connection

    from aigc_django.models.tracking import Event, IngestBatch, Visitor

    models = (Event, IngestBatch, Visitor) if visitors else (Event, IngestBatch)
    tables = ", ".join(connection.ops.quote_name(m._meta.db_table) for m in models)
    with connection.cursor() as cursor:
        cursor.execute(f"TRUNCATE {tables} RESTART IDENTITY CASCADE")
        cursor.execute("CHECKPOINT")


def counts() -> tuple[int, int]:
    """(events, visitors) in the database."""
    from aigc_django.models.tracking import Event, Visitor

    return Event.objects.count(), Visitor.objects.count()


def visitor_ids(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(n)]


def parse_span(text: str) -> timedelta:
    """``"1h"``, ``"30d"``, ``"90m"``, ``"45s"`` -> a timedelta (a plain number is seconds)."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    text = text.strip().lower()
    if text and text[-1] in units:
        return timedelta(seconds=float(text[:-1]) * units[text[-1]])
    return timedelta(seconds=float(text))


def raw_events(
    n: int,
    visitors: list[str],
    seed: int,
    now: datetime,
    span: timedelta = timedelta(days=30),
) -> list[dict[str, Any]]:
    """``n`` raw events as a server would send them to the API, in arrival (time) order.

    Their ``occurred_at`` spread uniformly over ``span`` ending a minute before ``now``:
    ``timedelta(hours=1)`` is a busy shop's hour (what a flusher sees, each batch covering
    seconds), the default 30 days the old, pessimistic shape (each batch covering hours, so
    nearly every visitor's ``last_seen`` moves on in every batch).
    """
    rng = random.Random(seed)
    seconds = max(span.total_seconds(), 1.0)
    offsets = sorted((rng.uniform(0, seconds) for _ in range(n)), reverse=True)
    kinds = [k for k, _ in KINDS]
    weights = [w for _, w in KINDS]
    out = []
    for offset, kind in zip(offsets, rng.choices(kinds, weights, k=n), strict=True):
        # A tenth of the visitors make half the events; low-numbered products are popular.
        busy = rng.random() < 0.5
        visitor = rng.choice(visitors[: max(1, len(visitors) // 10)] if busy else visitors)
        sku_n = int(PRODUCTS * rng.random() ** 3)
        category = CATEGORIES[sku_n % len(CATEGORIES)]
        price = round(5 + (sku_n % 200) * 1.5, 2)
        when = now - timedelta(seconds=60 + offset)
        event: dict[str, Any] = {"visitor": visitor, "kind": kind, "occurred_at": when.isoformat()}
        if kind == "page_view":
            event["properties"] = {
                "path": rng.choice(["/", "/about/", "/sale/", f"/c/{category}/"]),
                "referrer": rng.choice(REFERRERS),
            }
        elif kind == "category_view":
            event["category"] = category
            event["properties"] = {"page": rng.randint(1, 5), "sort": "popular"}
        elif kind == "search":
            query = " ".join(rng.sample(WORDS, rng.randint(1, 3)))
            event["properties"] = {"query": query, "results": rng.randint(0, 120)}
        elif kind in ("impression", "click"):
            event["item"] = f"sku-{sku_n}"
            event["category"] = category
            event["properties"] = {"slot": rng.choice(SLOTS), "banner": f"b-{sku_n % 40}"}
        else:  # product_view, add_to_cart, remove_from_cart, purchase
            event["item"] = f"sku-{sku_n}"
            event["category"] = category
            if kind == "product_view":
                event["properties"] = {"source": rng.choice(["search", "category", "banner"])}
            else:
                quantity = rng.randint(1, 3)
                event["value"] = round(price * quantity, 2)
                event["properties"] = {"quantity": quantity, "currency": "EUR"}
                if kind == "purchase":
                    event["properties"]["order"] = f"o-{rng.getrandbits(40):x}"
        out.append(event)
    return out


def clean_events(raws: list[dict[str, Any]], now: datetime) -> list[dict[str, Any]]:
    """The app's clean event dicts, exactly as ``clean_event`` makes them."""
    from aigc_django.tracking.events import clean_event

    return [clean_event(r, visitor_id=None, allow_visitor_field=True, now=now) for r in raws]


def utcnow() -> datetime:
    return datetime.now(UTC)


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0-100), nearest rank."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]


def table(headers: list[str], rows: list[list[Any]]) -> str:
    cells = [[str(h) for h in headers]] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = []
    for n, row in enumerate(cells):
        lines.append(
            "| "
            + " | ".join(
                c.ljust(w) if i == 0 else c.rjust(w)
                for i, (c, w) in enumerate(zip(row, widths, strict=True))
            )
            + " |"
        )
        if n == 0:
            lines.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def machine() -> str:
    """One line about the machine and the database server."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version")
        pg = cursor.fetchone()[0]
        cursor.execute("SHOW synchronous_commit")
        sync = cursor.fetchone()[0]
        cursor.execute("SHOW shared_buffers")
        shared = cursor.fetchone()[0]
    try:
        nproc = subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip()
    except OSError:
        nproc = str(os.cpu_count())
    return (
        f"nproc={nproc}, Python {platform.python_version()}, PostgreSQL {pg} on 127.0.0.1 "
        f"(synchronous_commit={sync}, shared_buffers={shared})"
    )


# ------------------------------------------------------------------- servers on loopback


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def stop_process_group(proc: subprocess.Popen | None, timeout: float = 15.0) -> None:
    """SIGTERM the process group that ``proc`` leads (started with
    ``start_new_session=True``), wait up to ``timeout`` seconds, then SIGKILL what is left."""
    import signal

    if proc is None:
        return
    try:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)
        # Children that outlived their parent (gunicorn workers, Celery pool processes).
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
