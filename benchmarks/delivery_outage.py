"""What an outage costs a page: render time of the storefront page with three personalized
slots with a warm cache, with the cache down, and with the database down (warm cache).

    .venv/bin/python benchmarks/delivery_outage.py [--iterations 1000] [--visitors 200]
        [--segments 6] [--products 24]

The site, the slots and the visitors are those of ``delivery_render.py`` (a throwaway
SQLite project in a temporary folder). The cache is warmed (each visitor's page rendered
once), then the page is rendered in the three modes in turn (the order rotates), each with
a fresh request for the next visitor, ``--iterations`` times per mode:

* ``warm``: the local-memory cache, as in production;
* ``cache down``: ``CACHES`` pointed at a Redis at a closed local port (connection refused
  at once); delivery reads the database on every render;
* ``database down``: every statement raises ``OperationalError`` (the warm path makes no
  query, so this should cost nothing).

Every render must show the variants' markup (no fallback, no empty slot). The warnings
the fallbacks log are silenced (their cost in production depends on the log handler). The
one version bump a process makes when the cache is back is not counted: each mode is
measured in its steady state. There is no goal: the ratio says how much slower a page is
during the outage.
"""

from __future__ import annotations

import gc
import logging
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import free_port
from benchmarks.delivery_render import (
    TIMES_HEADER,
    parse_arguments,
    request_for,
    seed,
    temporary_site,
    times_columns,
)

MODES = ("warm", "cache down", "database down")


def main() -> None:
    args = parse_arguments(__doc__, iterations=1000)

    with temporary_site(args.products, prefix="aigc-delivery-outage-"):
        from django.db import OperationalError, connection
        from django.template.loader import get_template
        from django.test.utils import CaptureQueriesContext, override_settings

        from aigc_django.delivery import cache as delivery_cache

        logging.getLogger("aigc_django").setLevel(logging.ERROR)
        visitors = seed(args.segments, args.visitors)
        page = get_template("personalized.html")
        context = {
            "products": [
                {
                    "name": f"Product {i}",
                    "price": "19.90",
                    "url": f"/p/{i}/",
                    "image": "",
                    "category": "",
                }
                for i in range(args.products)
            ],
            "categories": [],
        }
        for visitor_id in visitors:  # warm
            page.render(context, request_for(visitor_id))

        down_cache = {
            "default": {
                "BACKEND": "django.core.cache.backends.redis.RedisCache",
                "LOCATION": f"redis://127.0.0.1:{free_port()}/0",
                "OPTIONS": {"socket_connect_timeout": 1, "socket_timeout": 1},
            }
        }

        def refuse(execute, sql, params, many, context):
            raise OperationalError("the database is down (benchmark)")

        def render(mode: str, visitor_id) -> tuple[float, str]:
            request = request_for(visitor_id)
            if mode == "warm":
                started = time.perf_counter()
                html = page.render(context, request)
                return time.perf_counter() - started, html
            if mode == "cache down":
                with override_settings(CACHES=down_cache):
                    started = time.perf_counter()
                    html = page.render(context, request)
                    elapsed = time.perf_counter() - started
                # Steady state only: not the one bump a process makes when the cache is back.
                delivery_cache._outage["seen"] = False
                return elapsed, html
            with connection.execute_wrapper(refuse):
                started = time.perf_counter()
                html = page.render(context, request)
                return time.perf_counter() - started, html

        times: dict[str, list[float]] = {mode: [] for mode in MODES}
        queries: dict[str, int] = dict.fromkeys(MODES, 0)
        gc.collect()
        for i in range(args.iterations):
            visitor_id = visitors[i % len(visitors)]
            order = MODES[i % 3 :] + MODES[: i % 3]
            for mode in order:
                with CaptureQueriesContext(connection) as captured:
                    elapsed, html = render(mode, visitor_id)
                queries[mode] += len(captured)
                assert html.count("data-aigc-variant") >= 2, f"{mode}: a slot was not shown"
                assert "Welcome" not in html, f"{mode}: fallback content instead of variants"
                times[mode].append(elapsed)

    print(
        f"Delivery during outages: {args.iterations} renders per mode, rotating; "
        f"{args.visitors} visitors in {args.segments} segments; 3 slots; "
        f"{args.products} product cards; SQLite, local-memory cache when up"
    )
    print(f"{'mode':<16}{TIMES_HEADER}{'queries/page':>15}")
    for mode, values in times.items():
        print(f"{mode:<16}{times_columns(values)}{queries[mode] / args.iterations:>15.1f}")
    warm = statistics.median(times["warm"])
    for mode in MODES[1:]:
        print(f"ratio {mode}/warm (median): {statistics.median(times[mode]) / warm:.2f}x")


if __name__ == "__main__":
    main()
