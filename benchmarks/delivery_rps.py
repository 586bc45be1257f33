"""Requests per second under gunicorn: the personalized storefront page against the same
page with static includes of identical markup.

    .venv/bin/python benchmarks/delivery_rps.py [--seconds 8] [--rounds 3] [--clients 4]
        [--workers 2] [--visitors 200] [--segments 6] [--products 24]

The site is the one ``delivery_render.py`` writes (a throwaway Django project in a temporary
folder: SQLite, the local-memory cache per worker, the visitor middleware), served by
gunicorn (sync workers) on 127.0.0.1. ``/`` is the personalized page (two banners, a copy
slot's headline and body, the tracking script), ``/static/`` the same page with the markup
those tags rendered for one visitor saved as include files.

``--clients`` threads send GET requests with the signed visitor cookie of returning
visitors (taken in turn from ``--visitors`` visitors with profiles in ``--segments``
segments) and a browser User-Agent, so every personalized request runs the whole path:
visitor middleware, segment lookup, selection, stickiness, rendering and impression
counting. Each worker's cache is warmed first (every visitor's page requested several
times). Then each page is loaded for ``--seconds``, the order alternating each round; the
script prints requests per second per page and their ratio (goal >= 0.85x). Any response
other than 200 is counted as an error and reported. gunicorn is stopped (its process group)
even on errors, as in ``ingest_http.py``.
"""

from __future__ import annotations

import argparse
import http.client
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import delivery_render as site  # the shared benchmark site

GOAL = 0.85
PAGES = {"personalized": "/", "static": "/static/"}
USER_AGENT = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/126.0 Safari/537.36"
)


@dataclass
class Result:
    requests: int = 0
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(folder: Path, port: int, workers: int, log) -> subprocess.Popen:
    env = dict(
        os.environ,
        DJANGO_SETTINGS_MODULE=f"{site.PACKAGE}.settings",
        PYTHONPATH=os.pathsep.join([str(folder), str(site.ROOT)]),
    )
    cmd = [
        sys.executable,
        "-m",
        "gunicorn",
        f"{site.PACKAGE}.wsgi:application",
        "--bind",
        f"127.0.0.1:{port}",
        "--workers",
        str(workers),
        "--worker-class",
        "sync",
        "--log-level",
        "warning",
    ]
    proc = subprocess.Popen(
        cmd, cwd=folder, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"gunicorn exited with {proc.returncode}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            conn.request("GET", "/static/")
            if conn.getresponse().status == 200:
                conn.close()
                return proc
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError("gunicorn did not answer within 60 seconds.")


def stop_server(proc: subprocess.Popen | None) -> None:
    """SIGTERM the whole process group, then SIGKILL what is left."""
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
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def load(port: int, path: str, cookies: list[str], clients: int, seconds: float) -> Result:
    """``clients`` threads GET ``path`` for ``seconds``, each request as the next visitor."""
    result = Result()
    lock = threading.Lock()
    start = threading.Barrier(clients + 1)
    deadline = 0.0

    def client(index: int) -> None:
        latencies, errors, requests = [], [], 0
        i = index
        start.wait()
        while time.perf_counter() < deadline:
            cookie = cookies[i % len(cookies)]
            i += clients
            t0 = time.perf_counter()
            # Sync workers close every connection: a new one per request, as a browser
            # behind such a server would get.
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            try:
                conn.request("GET", path, headers={"Cookie": cookie, "User-Agent": USER_AGENT})
                response = conn.getresponse()
                response.read()
            except (OSError, http.client.HTTPException) as exc:
                errors.append(f"{type(exc).__name__}: {exc}")
                continue
            finally:
                conn.close()
            requests += 1
            latencies.append(time.perf_counter() - t0)
            if response.status != 200:
                errors.append(f"HTTP {response.status}")
        with lock:
            result.requests += requests
            result.latencies += latencies
            result.errors += errors

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(clients)]
    for thread in threads:
        thread.start()
    started = time.perf_counter()
    deadline = started + seconds
    start.wait()
    for thread in threads:
        thread.join()
    result.seconds = time.perf_counter() - started
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--visitors", type=int, default=200)
    parser.add_argument("--segments", type=int, default=6)
    parser.add_argument("--products", type=int, default=24)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="aigc-delivery-rps-") as tmp:
        folder = site.write_site(Path(tmp), args.products)
        site.setup(folder)
        from django.http import HttpResponse

        from aigc_django.conf import aigc_settings
        from aigc_django.tracking.visitors import set_visitor_cookie

        visitors = site.seed(args.segments, args.visitors)
        site.write_static_parts(folder, visitors[0])
        name = aigc_settings.VISITOR_COOKIE["NAME"]
        cookies = []
        for visitor_id in visitors:
            response = HttpResponse()
            set_visitor_cookie(response, visitor_id)
            cookies.append(f"{name}={response.cookies[name].value}")

        port = free_port()
        proc = None
        results: dict[str, list[Result]] = {page: [] for page in PAGES}
        with open(Path(tmp) / "gunicorn.log", "w+") as log:
            try:
                proc = start_server(folder, port, args.workers, log)
                for _ in range(3):  # every worker sees every visitor: warm caches
                    for page in PAGES.values():
                        load(port, page, cookies, args.clients, 1.5)
                for round_index in range(args.rounds):
                    order = list(PAGES) if round_index % 2 == 0 else list(reversed(PAGES))
                    for page in order:
                        results[page].append(
                            load(port, PAGES[page], cookies, args.clients, args.seconds)
                        )
            finally:
                stop_server(proc)
                log.seek(0)
                server_log = log.read().strip()

    print(
        f"Delivery under gunicorn: {args.workers} sync workers, {args.clients} client threads "
        f"on loopback (a new connection per request), {args.rounds} rounds x {args.seconds:g} s "
        f"per page, alternating; {args.visitors} returning visitors in {args.segments} segments; "
        f"{os.cpu_count()} CPUs shared by server and load generator"
    )
    print(f"{'page':<14}{'req/s (per round)':<34}{'median req/s':>14}{'p50 ms':>9}{'p99 ms':>9}")
    rates = {}
    for page, rounds in results.items():
        per_round = [r.rate for r in rounds]
        rates[page] = statistics.median(per_round)
        latencies = sorted(x for r in rounds for x in r.latencies)
        errors = [e for r in rounds for e in r.errors]
        print(
            f"{page:<14}{', '.join(f'{x:.0f}' for x in per_round):<34}{rates[page]:>14.0f}"
            f"{latencies[len(latencies) // 2] * 1000:>9.2f}"
            f"{latencies[int(len(latencies) * 0.99)] * 1000:>9.2f}"
        )
        if errors:
            print(f"  {len(errors)} errors, e.g. {errors[:3]}")
    ratio = rates["personalized"] / rates["static"]
    print(f"ratio personalized/static: {ratio:.3f}x (goal >= {GOAL}x: ", end="")
    print(("met" if ratio >= GOAL else "NOT met") + ")")
    if server_log:
        print("gunicorn log:", server_log[-2000:])


if __name__ == "__main__":
    main()
