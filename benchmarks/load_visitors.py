"""Load: 200 concurrent simulated visitors against the example storefront under gunicorn,
with PostgreSQL, Redis and a real Celery worker and beat.

    .venv/bin/python benchmarks/load_visitors.py [--duration 180] [--visitors 200]
        [--think 4] [--workers 3] [--threads 8] [--worker-class gthread] [--keep-alive 75]
        [--output PATH] [--rebuild]

Run longer with ``--duration 900`` (15 minutes) or more; ``--visitors`` and ``--think`` set
the offered load (about visitors / think requests per second).

The site is the example storefront (``example_project/``) with the settings of
``benchmarks/load_settings.py``: PostgreSQL, ``DEBUG`` off, the visitor middleware, the
template tags on every page (home and category pages show a personalized banner, the cart a
personalized copy slot), events buffered in Redis (``INGEST["MODE"] = "buffered"``), the
Django cache (throttles, delivery caches and impression/click counters) in Redis. The shop
is built once by ``prepare_demo`` (catalog, slots, 800 simulated shoppers, segments, the
models trained for few epochs (``--prepare-args``), generated and approved variants: a few
minutes) into the PostgreSQL database
``<db>_template``; every run clones it into ``--db`` (``--rebuild`` builds it again).

Processes, all on 127.0.0.1: gunicorn (``--workers`` x ``--threads`` gthread workers, HTTP
keep-alive ``--keep-alive`` seconds), ``celery -A storefront worker -Q aigc`` and
``celery -A storefront beat`` (the app's ``beat_schedule()``: events flushed every 10 s,
counters every minute).

First a crawler (a bot's User-Agent: no event, no cookie) requests every page for
``--warm-up`` seconds, so that gunicorn's threads hold their database connections. Then
the load generator (one asyncio process) runs ``--visitors`` simulated visitors at once,
each a browser with its own cookie jar and one keep-alive HTTP/1.1 connection, sending the
``X-Forwarded-For`` a reverse proxy would add (each visitor slot has its own address). A
visitor lands on the home page or a category page, then browses with think time
(exponential, mean ``--think`` seconds): category and product pages (mostly of a
favourite category), the home page, searches, the cart; adds products to the cart and
checks out (forms with the CSRF token); clicks a banner's signed redirect now and then; and
posts event batches to ``POST /aigc/api/events/`` the way the storefront's JavaScript does
(``X-CSRFToken`` from the page's ``<meta name="csrf-token">``, the ``csrftoken`` cookie),
each event tagged ``properties.load_run``. It follows redirects like a browser. After a
session a visitor comes back later with the same cookies, or a new visitor takes the slot.

At the end: the load stops (requests in flight finish), gunicorn stops, the Celery worker
drains the Redis buffer (beat's flushes), the delivery counters are flushed, then the
script checks:

* zero errors (any status other than 2xx/3xx, any connection error or timeout);
* events stored = events sent: the API's accepted events plus the events the pages' own
  ``track()`` calls make (one per page view, search with a query, cart add, checkout and
  click redirect; counted from the responses), and the API's events by their tag;
* clicks counted on the variants = click redirects followed; impressions counted =
  personalized banners (``data-aigc-variant``) plus cart-nudge copies in the pages served;
  the buffer empty, no event set aside.

It prints requests per second and p50/p95/p99 latency per request type and overall. Exit
status 0 when every check passes, 1 otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import http.client
import json
import os
import random
import re
import shlex
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote, urlsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks import common  # noqa: E402

EXAMPLE = ROOT / "example_project"
SETTINGS = "benchmarks.load_settings"
BUFFER_PREFIX = "aigc-load:events"  # INGEST["REDIS_KEY_PREFIX"] in load_settings.py
USER_AGENT = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/126.0 Safari/537.36"
)
ACCEPT_HTML = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
SEARCH_ENGINES = ["https://www.google.com/", "https://www.bing.com/", "https://duckduckgo.com/"]
REQUEST_TIMEOUT = 60.0
# A crawler (the app tracks no bot): the warm-up records no event.
WARM_UP_AGENT = "Mozilla/5.0 (compatible; load-warmup-bot/1.0)"

CSRF_META = re.compile(rb'<meta name="csrf-token" content="([^"]+)"')
CLICK_LINK = re.compile(rb'href="(/aigc/r/[^"]+/)"')
BANNER = re.compile(rb"data-aigc-variant=")
CART_NUDGE = b'<aside class="cart-nudge">'


# ------------------------------------------------------------------------------ results


@dataclass
class Stats:
    """What the load generator saw, summed over every visitor."""

    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    statuses: dict[str, Counter] = field(default_factory=lambda: defaultdict(Counter))
    errors: list[str] = field(default_factory=list)
    page_events: int = 0  # events the pages' own track() calls made
    api_events: int = 0  # events POST /aigc/api/events/ accepted
    api_sent: int = 0  # events posted to it
    clicks: int = 0  # click redirects followed
    banners: int = 0  # personalized banners in the pages received
    nudges: int = 0  # personalized cart-nudge copy in the cart pages received
    visitors: int = 0  # cookie jars (distinct simulated visitors)
    buffer_peak: int = 0  # most events seen waiting in the Redis buffer
    sessions: int = 0


class RequestFailed(Exception):
    pass


# ------------------------------------------------------------------- a browser, minimal


class Browser:
    """One visitor's browser: a cookie jar and one keep-alive HTTP/1.1 connection."""

    def __init__(
        self, port: int, address: str, keep_alive: float, user_agent: str = USER_AGENT
    ) -> None:
        self.port = port
        self.user_agent = user_agent
        self.address = address
        self.keep_alive = keep_alive
        self.cookies: dict[str, str] = {}
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.idle_since = 0.0
        self.csrf = ""  # the page's <meta name="csrf-token">, as shop.js reads it
        self.click_links: list[str] = []
        self.page = "/"
        self.cart = 0

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            with contextlib.suppress(OSError):
                await self.writer.wait_closed()
        self.reader = self.writer = None

    async def fetch(
        self, method: str, path: str, body: bytes | None = None, headers: dict | None = None
    ) -> tuple[int, dict[str, str], bytes]:
        # A browser drops a connection before the server's keep-alive timeout closes it,
        # so a request never races the server's close.
        if self.writer is not None and time.monotonic() - self.idle_since > self.keep_alive - 5:
            await self.close()
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        host = f"127.0.0.1:{self.port}"
        lines = [
            f"{method} {path} HTTP/1.1",
            f"Host: {host}",
            f"User-Agent: {self.user_agent}",
            "Accept-Language: en-GB,en;q=0.9",
            "Accept-Encoding: identity",
            f"X-Forwarded-For: {self.address}",
        ]
        if self.cookies:
            lines.append("Cookie: " + "; ".join(f"{k}={v}" for k, v in self.cookies.items()))
        for name, value in (headers or {}).items():
            lines.append(f"{name}: {value}")
        if body is not None:
            lines.append(f"Content-Length: {len(body)}")
        self.writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (body or b""))
        await self.writer.drain()
        reader = self.reader
        assert reader is not None
        status_line = await reader.readline()
        if not status_line:
            await self.close()
            raise RequestFailed("the server closed the connection without a response")
        parts = status_line.split(None, 2)
        status = int(parts[1])
        response_headers: dict[str, str] = {}
        while True:
            line = await reader.readline()
            if line in (b"\r\n", b"\n", b""):
                break
            name, _, value = line.decode("latin-1").partition(":")
            name, value = name.strip().lower(), value.strip()
            if name == "set-cookie":
                self._set_cookie(value)
            else:
                response_headers[name] = value
        if "content-length" in response_headers:
            data = await reader.readexactly(int(response_headers["content-length"]))
        elif response_headers.get("transfer-encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int((await reader.readline()).split(b";")[0], 16)
                if size == 0:
                    await reader.readline()
                    break
                chunks.append(await reader.readexactly(size))
                await reader.readline()
            data = b"".join(chunks)
        elif status in (204, 304) or method == "HEAD":
            data = b""
        else:
            data = await reader.read()
            response_headers["connection"] = "close"
        if response_headers.get("connection", "").lower() == "close":
            await self.close()
        self.idle_since = time.monotonic()
        return status, response_headers, data

    def _set_cookie(self, header: str) -> None:
        pair, _, attributes = header.partition(";")
        name, _, value = pair.strip().partition("=")
        if not value or "max-age=0" in attributes.lower().replace(" ", ""):
            self.cookies.pop(name, None)
        else:
            self.cookies[name] = value


# ------------------------------------------------------------------------ the visitors


def kind_of(path: str) -> str:
    """The request type of a GET ``path`` of the storefront (latency is reported per type)."""
    route = urlsplit(path).path
    if route == "/":
        return "home"
    for prefix, kind in (
        ("/c/", "category"),
        ("/p/", "product"),
        ("/search/", "search"),
        ("/cart/", "cart"),
        ("/checkout/done/", "checkout_done"),
        ("/checkout/", "checkout"),
        ("/aigc/r/", "click"),
    ):
        if route.startswith(prefix):
            return kind
    return "other"


def events_made(kind: str, method: str, path: str, status: int, location: str) -> int:
    """Events the storefront's own views record for this response (see example_project's
    README: "What each page records")."""
    if method == "GET" and status == 200:
        if kind in ("home", "category", "product", "cart"):
            return 1
        if kind == "search":
            query = dict(p.split("=", 1) for p in urlsplit(path).query.split("&") if "=" in p).get(
                "q", ""
            )
            return 1 if query.strip("+ ") else 0
        return 0
    if status == 302:
        if method == "GET" and kind == "click":
            return 1
        if method == "POST" and kind == "cart_add":
            return 1
        if method == "POST" and kind == "checkout":
            return 1 if urlsplit(location).path == "/checkout/done/" else 0
    return 0


class Shop:
    """The catalog the visitors browse and the shared counters."""

    def __init__(self, args, port: int, run_id: str, categories, products, words) -> None:
        self.args = args
        self.port = port
        self.run_id = run_id
        self.origin = f"http://127.0.0.1:{port}"
        self.categories: list[str] = categories
        self.products: dict[str, list[str]] = products
        self.all_products = [(c, s) for c, skus in products.items() for s in skus]
        self.words: list[str] = words
        self.stats = Stats()
        self.deadline = 0.0

    async def request(
        self,
        browser: Browser,
        kind: str,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict | None = None,
        follow: bool = True,
    ) -> tuple[int, dict[str, str], bytes] | None:
        """One request (and the redirect it leads to, as a browser follows it); None on error."""
        stats = self.stats
        all_headers = {"Referer": self.origin + browser.page}
        if method == "GET":
            all_headers["Accept"] = ACCEPT_HTML
        all_headers.update(headers or {})
        started = time.perf_counter()
        try:
            status, response_headers, data = await asyncio.wait_for(
                browser.fetch(method, path, body, all_headers), REQUEST_TIMEOUT
            )
        except (TimeoutError, OSError, RequestFailed, ValueError, IndexError) as exc:
            await browser.close()
            stats.errors.append(f"{kind} {method} {path}: {type(exc).__name__}: {exc}")
            stats.statuses[kind]["error"] += 1
            return None
        stats.latencies[kind].append(time.perf_counter() - started)
        stats.statuses[kind][status] += 1
        if not 200 <= status < 400:
            stats.errors.append(f"{kind} {method} {path}: HTTP {status}: {data[:200]!r}")
            return None
        location = response_headers.get("location", "")
        if kind == "events":
            try:
                stats.api_events += int(json.loads(data)["accepted"])
            except (ValueError, KeyError, TypeError) as exc:
                stats.errors.append(f"events POST: unexpected answer {data[:200]!r} ({exc})")
                return None
        else:
            stats.page_events += events_made(kind, method, path, status, location)
        if kind == "click" and status == 302:
            stats.clicks += 1
        if status == 200 and response_headers.get("content-type", "").startswith("text/html"):
            browser.page = path
            if found := CSRF_META.search(data):
                browser.csrf = found.group(1).decode()
            browser.click_links = [m.decode() for m in CLICK_LINK.findall(data)]
            stats.banners += len(BANNER.findall(data))
            stats.nudges += data.count(CART_NUDGE)
        if follow and status in (301, 302, 303) and location:
            target = urlsplit(location)
            if target.netloc in ("", f"127.0.0.1:{self.port}"):
                following = target.path + (f"?{target.query}" if target.query else "")
                return await self.request(browser, kind_of(following), "GET", following)
        return status, response_headers, data

    def form(self, browser: Browser, fields: dict[str, str]) -> tuple[bytes, dict]:
        body = "&".join(f"{k}={quote(v, safe='')}" for k, v in fields.items())
        headers = {
            "Content-Type": "application/x-www-form-urlencoded",
            "Origin": self.origin,
        }
        return body.encode(), headers

    async def pause(self, seconds: float) -> None:
        """Sleep, but not past the end of the load."""
        await asyncio.sleep(max(0.0, min(seconds, self.deadline - time.monotonic())))

    async def think(self, rng: random.Random) -> None:
        mean = self.args.think
        await self.pause(min(rng.expovariate(1 / mean), 6 * mean) if mean > 0 else 0)

    def product(self, rng: random.Random, favourite: str) -> tuple[str, str]:
        if rng.random() < 0.7 and self.products.get(favourite):
            return favourite, rng.choice(self.products[favourite])
        return rng.choice(self.all_products)

    async def post_events(self, browser: Browser, rng: random.Random, favourite: str) -> None:
        """A batch of events as the storefront's JavaScript sends it (wishlist saves and
        quick views), with the page's CSRF token and the csrftoken cookie."""
        events = []
        for _ in range(rng.randint(1, 8)):
            category, sku = self.product(rng, favourite)
            kind = rng.choice(["wishlist", "product_view"])
            events.append(
                {
                    "kind": kind,
                    "item": sku,
                    "category": category,
                    "properties": {"load_run": self.run_id, "source": "quick-view"},
                }
            )
        body = json.dumps({"events": events}).encode()
        self.stats.api_sent += len(events)
        await self.request(
            browser,
            "events",
            "POST",
            "/aigc/api/events/",
            body,
            {
                "Content-Type": "application/json",
                "Accept": "application/json",
                "X-CSRFToken": browser.csrf,
                "Origin": self.origin,
            },
        )

    async def session(self, browser: Browser, rng: random.Random, favourite: str) -> None:
        """One visit: a landing page, then ``pages`` steps with think time."""
        self.stats.sessions += 1
        landing = "/" if rng.random() < 0.5 else f"/c/{favourite}/"
        browser.page = "/"
        await self.request(
            browser,
            kind_of(landing),
            "GET",
            landing,
            headers={"Referer": rng.choice(SEARCH_ENGINES)},
        )
        for _ in range(rng.randint(3, 14)):
            if time.monotonic() >= self.deadline:
                return
            await self.think(rng)
            if time.monotonic() >= self.deadline:
                return
            roll = rng.random()
            on_product = kind_of(browser.page) == "product"
            if browser.click_links and roll < 0.08:
                await self.request(browser, "click", "GET", rng.choice(browser.click_links))
            elif on_product and roll < 0.20:
                sku = urlsplit(browser.page).path.split("/")[2]
                body, headers = self.form(
                    browser, {"csrfmiddlewaretoken": browser.csrf, "next": browser.page}
                )
                if await self.request(
                    browser, "cart_add", "POST", f"/cart/add/{sku}/", body, headers
                ):
                    browser.cart += 1
            elif browser.cart and roll < 0.26:
                if await self.request(browser, "checkout", "GET", "/checkout/"):
                    await self.think(rng)
                    body, headers = self.form(browser, {"csrfmiddlewaretoken": browser.csrf})
                    if await self.request(browser, "checkout", "POST", "/checkout/", body, headers):
                        browser.cart = 0
            elif roll < 0.36:
                await self.post_events(browser, rng, favourite)
            elif roll < 0.42:
                await self.request(browser, "cart", "GET", "/cart/")
            elif roll < 0.48:
                query = "+".join(rng.sample(self.words, rng.randint(1, 2)))
                await self.request(browser, "search", "GET", f"/search/?q={query}")
            elif roll < 0.54:
                await self.request(browser, "home", "GET", "/")
            elif roll < 0.72:
                category = favourite if rng.random() < 0.6 else rng.choice(self.categories)
                await self.request(browser, "category", "GET", f"/c/{category}/")
            else:
                _, sku = self.product(rng, favourite)
                await self.request(browser, "product", "GET", f"/p/{sku}/")

    async def visitor_slot(self, index: int, start_delay: float) -> None:
        """Visitors one after another in one slot of the concurrent load."""
        try:
            await self._visitor_slot(index, start_delay)
        except Exception as exc:  # a bug here must show as an error, not stop the others
            self.stats.errors.append(f"visitor slot {index} stopped: {exc!r}")

    async def _visitor_slot(self, index: int, start_delay: float) -> None:
        rng = random.Random(self.args.seed * 100_003 + index)
        address = f"10.{index // 65536 % 256}.{index // 256 % 256}.{index % 256}"
        await asyncio.sleep(start_delay)
        browser: Browser | None = None
        while time.monotonic() < self.deadline:
            if browser is None or rng.random() < 0.6:  # a new visitor, else the same returns
                if browser is not None:
                    await browser.close()
                browser = Browser(self.port, address, self.args.keep_alive)
                favourite = rng.choice(self.categories)
                self.stats.visitors += 1
            await self.session(browser, rng, favourite)
            if time.monotonic() < self.deadline:
                await self.pause(rng.uniform(0, 2 * self.args.think))
        if browser is not None:
            await browser.close()

    async def warm_up(self, seconds: float, connections: int = 12) -> int:
        """Every page type requested by a crawler for ``seconds`` (it records no event and
        gets no cookie), so each gunicorn thread has its database connection and the
        caches are warm before the visitors come; returns the errors seen."""
        paths = ["/", "/cart/", "/search/?q=warm"]
        paths += [f"/c/{c}/" for c in self.categories]
        paths += [f"/p/{sku}/" for _, sku in self.all_products]
        errors = 0
        until = time.monotonic() + seconds

        async def crawl(index: int) -> None:
            nonlocal errors
            browser = Browser(self.port, "10.255.255.1", self.args.keep_alive, WARM_UP_AGENT)
            i = index
            while time.monotonic() < until:
                try:
                    status, _, data = await asyncio.wait_for(
                        browser.fetch("GET", paths[i % len(paths)]), REQUEST_TIMEOUT
                    )
                except (TimeoutError, OSError, RequestFailed, ValueError, IndexError) as exc:
                    await browser.close()
                    status, data = 0, repr(exc).encode()
                if not 200 <= status < 400:
                    errors += 1
                    self.stats.errors.append(f"warm-up GET {paths[i % len(paths)]}: {data[:200]!r}")
                i += connections
            await browser.close()

        await asyncio.gather(*(crawl(i) for i in range(connections)))
        return errors

    async def run(self, seconds: float) -> float:
        self.deadline = time.monotonic() + seconds
        started = time.perf_counter()
        ramp = min(self.args.ramp, seconds / 2)
        await asyncio.gather(
            *(
                self.visitor_slot(i, ramp * i / self.args.visitors)
                for i in range(self.args.visitors)
            )
        )
        return time.perf_counter() - started


# ------------------------------------------------------------------------- the processes


def pg_params() -> dict[str, str]:
    return {
        "host": os.environ.get("AIGC_BENCH_PG_HOST", "127.0.0.1"),
        "port": os.environ.get("AIGC_BENCH_PG_PORT", "5432"),
        "user": os.environ.get("AIGC_BENCH_PG_USER", "postgres"),
    }


def site_env(args, db: str, prepare: bool = False) -> dict[str, str]:
    env = dict(
        os.environ,
        DJANGO_SETTINGS_MODULE=SETTINGS,
        PYTHONPATH=os.pathsep.join(
            filter(None, [str(ROOT), str(EXAMPLE), os.environ.get("PYTHONPATH")])
        ),
        STOREFRONT_DATA_DIR=str(args.data_dir),
        AIGC_LOAD_DB=db,
        AIGC_LOAD_REDIS=args.redis,
    )
    env.pop("AIGC_LOAD_PHASE", None)
    if prepare:
        env["AIGC_LOAD_PHASE"] = "prepare"
    return env


def database_exists(name: str) -> bool:
    import psycopg

    with psycopg.connect(dbname="postgres", autocommit=True, **pg_params()) as conn:
        return bool(conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone())


def prepare_template(args, template: str) -> None:
    """Build the shop once (``prepare_demo``) into the template database."""
    marker = args.data_dir / "prepared"
    if not args.rebuild and marker.exists() and database_exists(template):
        return
    print(f"Building the shop into {template} (prepare_demo, a few minutes) ...", flush=True)
    marker.unlink(missing_ok=True)
    args.data_dir.mkdir(parents=True, exist_ok=True)
    common.ensure_database(template)
    env = site_env(args, template, prepare=True)
    manage = [sys.executable, "manage.py"]
    for command in (
        ["migrate", "--noinput", "-v", "0"],
        ["prepare_demo", "--visitors", str(args.shoppers), *shlex.split(args.prepare_args)],
    ):
        subprocess.run(
            manage + command, cwd=EXAMPLE, env=env, check=True, stdout=subprocess.DEVNULL
        )
    marker.write_text(template)


def clone_database(template: str, name: str) -> None:
    import psycopg
    from psycopg import sql

    if not name.startswith("aigc_bench"):
        raise SystemExit(f"--db must start with aigc_bench (it is dropped): {name!r}")
    with psycopg.connect(dbname="postgres", autocommit=True, **pg_params()) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )
        conn.execute(
            sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                sql.Identifier(name), sql.Identifier(template)
            )
        )


def start(cmd: list[str], env: dict, log) -> subprocess.Popen:
    return subprocess.Popen(
        cmd, cwd=EXAMPLE, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )


def wait_for_site(port: int, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"gunicorn exited with {proc.returncode}; see its log below.")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            # A bot's User-Agent: the warm-up records no event.
            conn.request("GET", "/", headers={"User-Agent": "curl/8 (load check)"})
            status = conn.getresponse().status
            conn.close()
            if status == 200:
                return
        except OSError:
            pass
        time.sleep(0.3)
    raise RuntimeError("gunicorn did not answer within 60 seconds.")


def buffer_state(client) -> tuple[int, int, int]:
    """(events queued, batches taken but not finished, events set aside) in the buffer."""
    return (
        int(client.llen(f"{BUFFER_PREFIX}:queue")),
        int(client.zcard(f"{BUFFER_PREFIX}:taken")),
        int(client.llen(f"{BUFFER_PREFIX}:dead")),
    )


def sample_buffer(client, shop: Shop) -> None:
    """Note the most events waiting in the Redis buffer, once a second during the load."""
    while shop.deadline == 0.0 or time.monotonic() < shop.deadline:
        with contextlib.suppress(Exception):
            shop.stats.buffer_peak = max(shop.stats.buffer_peak, buffer_state(client)[0])
        time.sleep(1.0)


def totals() -> dict[str, int]:
    from django.db.models import Sum

    from aigc_django.models import Event, Variant

    sums = Variant.objects.aggregate(
        impressions=Sum("impressions"), clicks=Sum("clicks"), conversions=Sum("conversions")
    )
    return {"events": Event.objects.count(), **{k: v or 0 for k, v in sums.items()}}


# ------------------------------------------------------------------------------- report


def latency_rows(stats: Stats) -> list[list]:
    order = [
        "home",
        "category",
        "product",
        "search",
        "cart",
        "cart_add",
        "checkout",
        "checkout_done",
        "click",
        "events",
        "other",
    ]
    rows = []
    everything: list[float] = []
    for kind in order:
        values = stats.latencies.get(kind, [])
        failed = stats.statuses[kind]["error"] + sum(
            n for s, n in stats.statuses[kind].items() if s != "error" and not 200 <= s < 400
        )
        if not values and not failed:
            continue  # a type this run never sent
        everything += values
        rows.append(row(kind, values, failed))
    rows.append(row("all", everything, len(stats.errors)))
    return rows


def row(name: str, values: list[float], failed: int) -> list:
    def ms(q: float) -> str:
        return f"{common.percentile(values, q) * 1000:.0f}" if values else "-"

    return [name, f"{len(values):,}", failed, ms(50), ms(95), ms(99), ms(100)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=180.0, help="seconds of load")
    parser.add_argument("--visitors", type=int, default=200, help="concurrent visitors")
    parser.add_argument("--think", type=float, default=4.0, help="mean think time, seconds")
    parser.add_argument("--ramp", type=float, default=10.0, help="seconds to start them all")
    parser.add_argument("--warm-up", type=float, default=5.0, help="seconds, before the load")
    parser.add_argument("--workers", type=int, default=3, help="gunicorn workers")
    parser.add_argument("--threads", type=int, default=8, help="threads per gthread worker")
    parser.add_argument("--worker-class", choices=["gthread", "sync"], default="gthread")
    parser.add_argument("--keep-alive", type=int, default=75, help="gunicorn --keep-alive")
    parser.add_argument("--celery-concurrency", type=int, default=1)
    parser.add_argument("--db", default="aigc_bench_load", help="PostgreSQL database (dropped)")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/12", help="flushed first")
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=Path(tempfile.gettempdir()) / "aigc-load-bench",
        help="the prepared shop's media and models (kept between runs)",
    )
    parser.add_argument("--shoppers", type=int, default=800, help="prepare_demo --visitors")
    parser.add_argument("--rebuild", action="store_true", help="build the shop again")
    parser.add_argument(
        "--prepare-args",
        default="--epochs 3 --gan-epochs 5 --layout-epochs 5",
        help="more prepare_demo options (few epochs: the load measures delivery, not the "
        "quality of the content)",
    )
    parser.add_argument("--drain-timeout", type=float, default=120.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--output", type=Path, help="also write the report to this file")
    args = parser.parse_args()
    if args.worker_class == "sync":
        args.threads = 1

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    template = f"{args.db}_template"
    prepare_template(args, template)
    clone_database(template, args.db)

    env = site_env(args, args.db)
    os.environ.update(env)
    sys.path.insert(0, str(EXAMPLE))
    import django
    import redis
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0, interactive=False)
    from shop.models import Category, Product

    from aigc_django.delivery.counters import BUCKET_SECONDS, flush_counters
    from aigc_django.models import Event, Variant

    client = redis.Redis.from_url(args.redis, socket_timeout=5)
    client.flushdb()
    categories = list(Category.objects.order_by("slug").values_list("slug", flat=True))
    products: dict[str, list[str]] = defaultdict(list)
    words: set[str] = set()
    for sku, category, name in Product.objects.values_list("sku", "category__slug", "name"):
        products[category].append(sku)
        words.update(w.lower() for w in name.split() if len(w) > 3 and w.isalpha())
    approved = Variant.objects.filter(status=Variant.Status.APPROVED).count()
    before = totals()
    run_id = uuid.uuid4().hex[:12]
    port = common.free_port()
    load_before = os.getloadavg()

    out: list[str] = []

    def say(line: str = "") -> None:
        print(line, flush=True)
        out.append(line)

    procs: dict[str, subprocess.Popen | None] = {"gunicorn": None, "worker": None, "beat": None}
    shop = Shop(args, port, run_id, categories, dict(products), sorted(words))
    with tempfile.TemporaryDirectory(prefix="aigc-load-") as tmp, contextlib.ExitStack() as stack:
        logs = {name: stack.enter_context(open(Path(tmp) / f"{name}.log", "w+")) for name in procs}
        ok = False
        try:
            celery = [sys.executable, "-m", "celery", "-A", "storefront"]
            procs["worker"] = start(
                [
                    *celery,
                    "worker",
                    "-Q",
                    "aigc",
                    "-c",
                    str(args.celery_concurrency),
                    "-l",
                    "warning",
                    "-n",
                    f"load-{run_id}@%h",
                    "--without-gossip",
                    "--without-mingle",
                ],
                env,
                logs["worker"],
            )
            procs["beat"] = start(
                [
                    *celery,
                    "beat",
                    "-l",
                    "warning",
                    "-s",
                    str(Path(tmp) / "beat-schedule"),
                    "--pidfile",
                    str(Path(tmp) / "beat.pid"),
                ],
                env,
                logs["beat"],
            )
            gunicorn = [
                sys.executable,
                "-m",
                "gunicorn",
                "storefront.wsgi:application",
                "--bind",
                f"127.0.0.1:{port}",
                "--workers",
                str(args.workers),
                "--worker-class",
                args.worker_class,
                "--keep-alive",
                str(args.keep_alive),
                "--backlog",
                "2048",
                "--graceful-timeout",
                "15",
                "--log-level",
                "warning",
            ]
            if args.worker_class == "gthread":
                gunicorn += ["--threads", str(args.threads)]
            procs["gunicorn"] = start(gunicorn, env, logs["gunicorn"])
            wait_for_site(port, procs["gunicorn"])

            print(f"Warm-up: {args.warm_up:g} s of crawler requests ...", flush=True)
            asyncio.run(shop.warm_up(args.warm_up))
            print(f"Load: {args.visitors} visitors for {args.duration:g} s ...", flush=True)
            cpu_started = time.process_time()
            sampler = threading.Thread(target=sample_buffer, args=(client, shop), daemon=True)
            sampler.start()
            seconds = asyncio.run(shop.run(args.duration))
            generator_cpu = time.process_time() - cpu_started
            load_after = os.getloadavg()

            # Stop the site (its workers write the impressions they hold at exit), then let
            # the Celery worker drain the buffer on beat's schedule.
            drain_started = time.perf_counter()
            common.stop_process_group(procs["gunicorn"])
            while True:
                queued, taken, _ = buffer_state(client)
                if not queued and not taken:
                    break
                if time.perf_counter() - drain_started > args.drain_timeout:
                    break
                time.sleep(0.5)
            drained = time.perf_counter() - drain_started
            # Every counter bucket is closed a few minutes on: flush them all now.
            flush_counters(now=time.time() + 3 * BUCKET_SECONDS)
            common.stop_process_group(procs["beat"])
            common.stop_process_group(procs["worker"], timeout=30)
            queued, taken, dead = buffer_state(client)
            after = totals()
            tagged = Event.objects.filter(properties__load_run=run_id).count()
        finally:
            for proc in procs.values():
                common.stop_process_group(proc)
            tails = {}
            for name, log in logs.items():
                log.flush()
                log.seek(0)
                tails[name] = log.read()[-3000:].strip()
            if sys.exc_info()[0] is not None:
                for name, tail in tails.items():
                    print(f"--- {name} log (tail) ---\n{tail}\n---", file=sys.stderr)

        stats = shop.stats
        requests = sum(len(v) for v in stats.latencies.values()) + sum(
            c["error"] for c in stats.statuses.values()
        )
        sent = stats.page_events + stats.api_events
        stored = after["events"] - before["events"]
        clicks = after["clicks"] - before["clicks"]
        impressions = after["impressions"] - before["impressions"]
        checks = [
            ("zero errors", not stats.errors, f"{len(stats.errors)} errors"),
            (
                "events stored = events sent",
                stored == sent,
                f"{stored:,} stored, {sent:,} sent ({stats.page_events:,} by the pages' "
                f"track(), {stats.api_events:,} accepted by the API)",
            ),
            (
                "API events stored (by their load_run tag) = accepted",
                tagged == stats.api_events == stats.api_sent,
                f"{tagged:,} stored, {stats.api_events:,} accepted, {stats.api_sent:,} posted",
            ),
            (
                "buffer drained, nothing set aside",
                not queued and not taken and not dead,
                f"{queued} queued, {taken} batches taken, {dead} set aside; at most "
                f"{stats.buffer_peak:,} events waited in Redis during the load; empty "
                f"{drained:.1f} s after it (gunicorn stopped meanwhile)",
            ),
            (
                "clicks counted on the variants = click redirects",
                clicks == stats.clicks,
                f"{clicks:,} counted, {stats.clicks:,} redirects",
            ),
            (
                "impressions counted on the variants = personalized content served",
                impressions == stats.banners + stats.nudges,
                f"{impressions:,} counted, {stats.banners:,} banners + {stats.nudges:,} "
                "cart-nudge copies served",
            ),
        ]
        ok = all(passed for _, passed, _ in checks)

        say(
            f"Load: {args.visitors} concurrent simulated visitors for {seconds:.0f} s "
            f"(ramp-up {min(args.ramp, args.duration / 2):g} s, think time exponential, "
            f"mean {args.think:g} s) against the example storefront on 127.0.0.1."
        )
        threads = f" x {args.threads} threads" if args.worker_class == "gthread" else ""
        say(
            f"Server: gunicorn {args.workers} {args.worker_class} workers{threads}, keep-alive "
            f"{args.keep_alive:g} s; PostgreSQL; Redis (cache, event buffer in buffered mode, "
            f"broker); celery worker -Q aigc -c {args.celery_concurrency}; celery beat."
        )
        say(
            f"Shop: {sum(len(v) for v in products.values())} products in {len(categories)} "
            f"categories, {approved} approved variants; run {run_id}."
        )
        say(common.machine())
        say(
            f"The load generator (this process) used {generator_cpu:.0f} CPU seconds "
            f"({generator_cpu / seconds:.0%} of one core)."
        )
        say(
            f"Load average (1, 5, 15 min) before: {', '.join(f'{x:.1f}' for x in load_before)}; "
            f"after the load: {', '.join(f'{x:.1f}' for x in load_after)}."
        )
        say()
        say(
            f"{requests:,} requests in {seconds:.0f} s = {requests / seconds:,.1f} requests/s; "
            f"{stats.visitors:,} visitors (cookie jars), {stats.sessions:,} sessions, "
            f"{after['conversions'] - before['conversions']:,} conversions counted."
        )
        say(
            common.table(
                ["request", "requests", "errors", "p50 ms", "p95 ms", "p99 ms", "max ms"],
                latency_rows(stats),
            )
        )
        say()
        for name, passed, detail in checks:
            say(f"{'PASS' if passed else 'FAIL'}  {name}: {detail}")
        for error in stats.errors[:10]:
            say(f"  error: {error}")
        if len(stats.errors) > 10:
            say(f"  ... and {len(stats.errors) - 10} more")
        statuses = {k: dict(v) for k, v in stats.statuses.items() if v}
        say(f"Statuses: {json.dumps(statuses, default=str)}")
        if args.output:
            args.output.write_text("\n".join(out) + "\n")
        for name, tail in tails.items():
            if tail and (not ok or "Traceback" in tail or "ERROR" in tail):
                print(f"--- {name} log (tail) ---\n{tail}\n---", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
