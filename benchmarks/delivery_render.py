"""Template render time: a storefront page with three personalized slots against the same
page with static includes of identical markup, on a warm cache.

    .venv/bin/python benchmarks/delivery_render.py [--iterations 3000] [--visitors 200]
        [--segments 6] [--products 24]

Both pages extend one base template (header, navigation, a grid of ``--products`` product
cards, footer) and differ only in three places: the personalized page has
``{% aigc_banner "home-hero" %}``, ``{% aigc_banner "category-strip" %}``, the
``cart-nudge`` headline and body (``{% aigc_copy %}``) and ``{% aigc_tracking_script %}``;
the static page has ``{% include %}`` files holding the markup those tags rendered for one
visitor. The site is a throwaway Django project written to a temporary folder (SQLite,
the local-memory cache, the visitor middleware), shared with ``delivery_rps.py``.

Every slot has two approved variants for each of ``--segments`` learned segments and for
everyone; ``--visitors`` visitors have profiles spread over the segments. The cache is
warmed (each visitor's page rendered once: segment lookups, slot entries, sticky picks),
then the two pages are rendered alternately (which goes first alternates too), each with a
fresh request for the next visitor in turn, ``--iterations`` times each. Each render counts
its impressions in the cache as in production. The script asserts that the timed renders
made no database query, and prints mean and median per page and their ratio (goal: the
personalized page takes at most 1.15x the static one).
"""

from __future__ import annotations

import argparse
import gc
import os
import random
import statistics
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
GOAL = 1.15
PACKAGE = "aigc_delivery_bench"

SETTINGS = """
import os
from pathlib import Path

HERE = Path(__file__).resolve().parent
SECRET_KEY = "delivery-benchmark-secret-key-not-for-production-0123456789"
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "testserver"]
USE_TZ = True
ROOT_URLCONF = "aigc_delivery_bench.urls"
WSGI_APPLICATION = "aigc_delivery_bench.wsgi.application"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
INSTALLED_APPS = ["django.contrib.auth", "django.contrib.contenttypes", "aigc_django"]
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.common.CommonMiddleware",
    "aigc_django.tracking.middleware.VisitorMiddleware",
]
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [HERE / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {"context_processors": ["django.template.context_processors.request"]},
    }
]
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": HERE / "db.sqlite3"}}
# Room for every visitor's keys: the default MAX_ENTRIES (300) culls a third of the cache
# whenever it fills, which turns the warm path cold.
CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
        "OPTIONS": {"MAX_ENTRIES": 100_000},
    }
}
STATIC_URL = "/static/"
MEDIA_URL = "/media/"
SILENCED_SYSTEM_CHECKS = ["aigc_django.W003"]
AIGC = {}
"""

URLS = """
from django.shortcuts import render
from django.urls import include, path

PRODUCTS = [
    {"name": f"Product {i}", "price": f"{19 + i}.90", "url": f"/p/{i}/",
     "image": f"/media/products/{i}.jpg", "category": ["Shoes", "Tea", "Lamps"][i % 3]}
    for i in range({products})
]
CATEGORIES = ["Shoes", "Shirts", "Bags", "Lamps", "Tea", "Bikes", "Toys", "Jackets"]


def page(name):
    def view(request):
        return render(request, name, {"products": PRODUCTS, "categories": CATEGORIES})
    return view


urlpatterns = [
    path("", page("personalized.html")),
    path("static/", page("static.html")),
    path("aigc/", include("aigc_django.urls")),
]
"""

WSGI = """
import os
from django.core.wsgi import get_wsgi_application
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "aigc_delivery_bench.settings")
application = get_wsgi_application()
"""

BASE = """<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>Storefront</title>
<link rel="stylesheet" href="/static/shop/style.css"></head>
<body>
<header class="site-header"><a class="brand" href="/">Storefront</a>
<form action="/search/" method="get"><input type="search" name="q"></form>
<nav class="categories">{% for c in categories %}
<a href="/c/{{ c|slugify }}/">{{ c }}</a>{% endfor %}</nav>
</header>
<main>
<section class="hero">{% block hero %}{% endblock %}</section>
<section class="strip">{% block strip %}{% endblock %}</section>
<aside class="cart-nudge">{% block nudge %}{% endblock %}</aside>
<h2>Featured</h2>
<div class="grid">
{% for p in products %}
  <article class="card"><a href="{{ p.url }}">
  <img src="{{ p.image }}" alt="{{ p.name }}" width="300" height="300" loading="lazy"></a>
  <h3><a href="{{ p.url }}">{{ p.name }}</a></h3><p class="muted">{{ p.category }}</p>
  <p class="price">${{ p.price }}</p>
  <form action="/cart/add/{{ forloop.counter }}/" method="post">
  <button type="submit">Add to cart</button></form></article>
{% endfor %}
</div>
</main>
<footer class="site-footer"><p>A demo shop.</p></footer>
{% block script %}{% endblock %}
</body>
</html>
"""

PERSONALIZED = """{% extends "base.html" %}{% load aigc %}
{% block hero %}{% aigc_banner "home-hero" size="1200x628" loading="eager" %}{% endblock %}
{% block strip %}{% aigc_banner "category-strip" size="1920x600" %}{% endblock %}
{% block nudge %}<strong>{% aigc_copy "cart-nudge" "headline" %}</strong>
<p>{% aigc_copy "cart-nudge" "body" %}</p>{% endblock %}
{% block script %}{% aigc_tracking_script %}{% endblock %}
"""

STATIC = """{% extends "base.html" %}
{% block hero %}{% include "static/hero.html" %}{% endblock %}
{% block strip %}{% include "static/strip.html" %}{% endblock %}
{% block nudge %}<strong>{% include "static/headline.html" %}</strong>
<p>{% include "static/body.html" %}</p>{% endblock %}
{% block script %}{% include "static/script.html" %}{% endblock %}
"""

SLOTS = {
    "home-hero": {"kind": "banner", "sizes": [[1200, 628], [728, 90], [300, 250]], "link": "/"},
    "category-strip": {"kind": "banner", "sizes": [[1920, 600], [750, 1000]], "link": "/sale/"},
    "cart-nudge": {"kind": "copy", "sizes": [], "link": "/cart/"},
}
STATIC_PARTS = {
    "hero.html": '{% aigc_banner "home-hero" size="1200x628" loading="eager" %}',
    "strip.html": '{% aigc_banner "category-strip" size="1920x600" %}',
    "headline.html": '{% aigc_copy "cart-nudge" "headline" %}',
    "body.html": '{% aigc_copy "cart-nudge" "body" %}',
    "script.html": "{% aigc_tracking_script %}",
}


def write_site(folder: Path, products: int) -> Path:
    """Write the benchmark site's package into ``folder``; return the folder for sys.path."""
    package = folder / PACKAGE
    (package / "templates" / "static").mkdir(parents=True, exist_ok=True)
    files = {
        "__init__.py": "",
        "settings.py": SETTINGS,
        "urls.py": URLS.replace("{products}", str(products)),
        "wsgi.py": WSGI,
        "templates/base.html": BASE,
        "templates/personalized.html": PERSONALIZED,
        "templates/static.html": STATIC,
    }
    for name, text in files.items():
        (package / name).write_text(textwrap.dedent(text).lstrip())
    return folder


def setup(folder: Path) -> None:
    """Django set up on the site in ``folder``, migrated."""
    sys.path.insert(0, str(folder))
    sys.path.insert(0, str(ROOT))
    os.environ["DJANGO_SETTINGS_MODULE"] = f"{PACKAGE}.settings"
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0, interactive=False)


@contextmanager
def temporary_site(products: int, prefix: str) -> Iterator[Path]:
    """The site written to a temporary folder and set up; yields the folder, removed after."""
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        folder = write_site(Path(tmp), products)
        setup(folder)
        yield folder


def parse_arguments(doc: str, iterations: int) -> argparse.Namespace:
    """The command line shared with ``delivery_outage.py``; ``iterations`` is the default."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("--iterations", type=int, default=iterations)
    parser.add_argument("--visitors", type=int, default=200)
    parser.add_argument("--segments", type=int, default=6)
    parser.add_argument("--products", type=int, default=24)
    return parser.parse_args()


TIMES_HEADER = f"{'mean ms':>10}{'median ms':>12}{'p95 ms':>10}"


def times_columns(values: list[float]) -> str:
    """Mean, median and p95 of render times in seconds, as milliseconds under TIMES_HEADER."""
    ordered = sorted(values)
    return (
        f"{statistics.fmean(ordered) * 1000:>10.3f}"
        f"{statistics.median(ordered) * 1000:>12.3f}"
        f"{ordered[int(len(ordered) * 0.95)] * 1000:>10.3f}"
    )


def renditions(tag: str, sizes: list[list[int]]) -> dict[str, dict]:
    """Rendition data as generation stores it (full size and a half width, WebP + JPEG)."""
    found = {}
    for width, height in sizes:
        label = f"{width}x{height}"
        files = []
        for w in (width, width // 2):
            for fmt, ext in (("WEBP", "webp"), ("JPEG", "jpg")):
                files.append(
                    {
                        "name": f"aigc/variants/{tag}/{label}/{w}w.{ext}",
                        "width": w,
                        "height": round(height * w / width),
                        "format": fmt,
                    }
                )
        found[label] = {"width": width, "height": height, "files": files, "layout": {}}
    return found


def seed(segments: int, visitors: int, seed_value: int = 0) -> list[Any]:
    """Slots, segments, approved variants and visitors with profiles; returns visitor ids."""
    from aigc_django.models import Profile, Segment, Slot, Variant, Visitor
    from aigc_django.profiles.build import ensure_everyone

    rng = random.Random(seed_value)
    everyone = ensure_everyone()
    learned = [
        Segment.objects.get_or_create(key=f"segment-{i}", defaults={"name": f"Segment {i}"})[0]
        for i in range(segments)
    ]
    Variant.objects.all().delete()
    for key, spec in SLOTS.items():
        slot, _ = Slot.objects.update_or_create(
            key=key,
            defaults={
                "name": key,
                "kind": spec["kind"],
                "sizes": spec["sizes"],
                "link": spec["link"],
                "copy_fields": {"headline": 60, "body": 140, "cta": 20},
                "fallback": {"headline": "Welcome"},
            },
        )
        for segment in [everyone, *learned]:
            for n in range(2):
                tag = f"{key}-{segment.key}-{n}"
                impressions = rng.randint(200, 5000)
                Variant.objects.create(
                    slot=slot,
                    segment=segment,
                    status=Variant.Status.APPROVED,
                    copy={
                        "headline": f"Picked for {segment.name}: spring favourites {n}",
                        "body": f"New arrivals for {segment.name}, with free returns. ({n})",
                        "cta": "Shop now",
                    },
                    alt_text=f"Spring favourites for {segment.name}",
                    renditions=renditions(tag, spec["sizes"]) if spec["sizes"] else {},
                    impressions=impressions,
                    clicks=rng.randint(0, impressions // 10),
                )
    Visitor.objects.all().delete()
    ids = []
    for i in range(visitors):
        visitor = Visitor.objects.create()
        Profile.objects.create(visitor=visitor, segment=learned[i % len(learned)])
        ids.append(visitor.pk)
    return ids


def request_for(visitor_id: Any, path: str = "/"):
    """A request as the visitor middleware leaves it for a returning, tracked visitor."""
    from django.contrib.auth.models import AnonymousUser
    from django.test import RequestFactory

    request = RequestFactory().get(path)
    request.aigc_tracking = True
    request.aigc_visitor_id = visitor_id
    request.user = AnonymousUser()
    return request


def write_static_parts(folder: Path, visitor_id: Any) -> None:
    """The static includes: the markup the tags render for ``visitor_id``, saved as files."""
    from django.template import engines

    engine = engines["django"]
    request = request_for(visitor_id)
    target = folder / PACKAGE / "templates" / "static"
    for name, source in STATIC_PARTS.items():
        html = engine.from_string("{% load aigc %}" + source).render({}, request)
        (target / name).write_text(html)


def main() -> None:
    args = parse_arguments(__doc__, iterations=3000)

    with temporary_site(args.products, prefix="aigc-delivery-render-") as folder:
        from django.db import connection
        from django.template.loader import get_template
        from django.test.utils import CaptureQueriesContext

        visitors = seed(args.segments, args.visitors)
        write_static_parts(folder, visitors[0])
        pages = {
            "personalized": get_template("personalized.html"),
            "static": get_template("static.html"),
        }
        context = {
            "products": [
                {
                    "name": f"Product {i}",
                    "price": f"{19 + i}.90",
                    "url": f"/p/{i}/",
                    "image": f"/media/products/{i}.jpg",
                    "category": ["Shoes", "Tea", "Lamps"][i % 3],
                }
                for i in range(args.products)
            ],
            "categories": ["Shoes", "Shirts", "Bags", "Lamps", "Tea", "Bikes", "Toys", "Jackets"],
        }
        # Same markup: the static page is the personalized page of the first visitor.
        first = request_for(visitors[0])
        same = pages["personalized"].render(context, first) == pages["static"].render(
            context, request_for(visitors[0])
        )
        for visitor_id in visitors:  # warm: lookups, slot entries, sticky picks
            pages["personalized"].render(context, request_for(visitor_id))

        times: dict[str, list[float]] = {name: [] for name in pages}
        gc.collect()
        with CaptureQueriesContext(connection) as queries:
            for i in range(args.iterations):
                order = ["personalized", "static"] if i % 2 == 0 else ["static", "personalized"]
                visitor_id = visitors[i % len(visitors)]
                for name in order:
                    request = request_for(visitor_id)
                    started = time.perf_counter()
                    pages[name].render(context, request)
                    times[name].append(time.perf_counter() - started)
        assert len(queries) == 0, f"the warm path made {len(queries)} queries: {queries[:3]}"

    print(
        f"Delivery render: {args.iterations} renders per page, alternating; {args.visitors} "
        f"visitors in {args.segments} segments; 3 slots x {args.segments + 1} segments x 2 "
        f"approved variants; {args.products} product cards; warm local-memory cache"
    )
    print(f"static markup identical to the first visitor's personalized page: {same}")
    print(f"database queries during the timed renders: {len(queries)}")
    print(f"{'page':<14}{TIMES_HEADER}")
    for name, values in times.items():
        print(f"{name:<14}{times_columns(values)}")
    mean_ratio = statistics.fmean(times["personalized"]) / statistics.fmean(times["static"])
    median_ratio = statistics.median(times["personalized"]) / statistics.median(times["static"])
    extra = statistics.median(times["personalized"]) - statistics.median(times["static"])
    print(f"ratio personalized/static: mean {mean_ratio:.3f}x, median {median_ratio:.3f}x")
    print(f"cost of the three slots (median difference): {extra * 1e6:.0f} us per page")
    verdict = "met" if median_ratio <= GOAL else "NOT met"
    print(f"goal <= {GOAL}x (median): {verdict}")


if __name__ == "__main__":
    main()
