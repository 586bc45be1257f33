"""Fixtures for the real services: PostgreSQL (through AIGC_TEST_DB), Redis, Celery and a
headless Chromium for the browser tests.

Tests that need a service are skipped when it is missing, as on a laptop without them.
With AIGC_REQUIRE_SERVICES=1 (CI) a missing service fails the run instead.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from django.conf import settings
from django.db import connection, connections
from django.test import Client

from aigc_django.tracking import ingest
from tests.celery_app import app as celery_app  # noqa: F401  (the project's Celery app)

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

REQUIRE_SERVICES = os.environ.get("AIGC_REQUIRE_SERVICES") == "1"


def missing_service(reason: str) -> None:
    if REQUIRE_SERVICES:
        pytest.fail(f"{reason} (AIGC_REQUIRE_SERVICES=1, so this fails instead of skipping)")
    pytest.skip(reason)


@pytest.fixture
def redis_url() -> str:
    """A flushed Redis database for the test."""
    import redis

    url = settings.REDIS_URL
    client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=2)
    try:
        client.ping()
    except redis.RedisError as exc:
        missing_service(f"Redis is not reachable at {url}: {exc}")
    client.flushdb()
    yield url
    client.flushdb()


@pytest.fixture
def postgres(db) -> None:
    if connection.vendor != "postgresql":
        missing_service("needs PostgreSQL: run with AIGC_TEST_DB=postgres")


@pytest.fixture(autouse=True)
def _fresh_buffer():
    """No events left over in a memory buffer from another test."""
    ingest.get_buffer.cache_clear()
    ingest._memory_buffers.clear()
    yield
    ingest.get_buffer.cache_clear()
    ingest._memory_buffers.clear()


@pytest.fixture(autouse=True)
def _no_held_impressions():
    """No impressions left over in this process's batch from another test."""
    from aigc_django.delivery import counters

    counters._held.clear()
    yield
    counters._held.clear()


@pytest.fixture
def aigc(settings):
    """Change AIGC options for one test: ``aigc(INGEST={"MODE": "buffered"})``."""

    def change(**options):
        settings.AIGC = {**settings.AIGC, **options}

    return change


DUMMY_COPY = "aigc_django.generation.backends.dummy.DummyCopyBackend"
DUMMY_IMAGE = "aigc_django.generation.backends.dummy.DummyImageBackend"


@pytest.fixture
def dummy_backends(aigc, settings, tmp_path, request):
    """The dummy copy and image backends, media files under ``tmp_path``, fresh backends.

    A test module's ``DUMMY_GENERATION`` dict adds ``AIGC["GENERATION"]`` options. Modules
    use it with ``pytestmark = pytest.mark.usefixtures("dummy_backends")`` or ask for it.
    """
    from aigc_django.generation import backends

    settings.MEDIA_ROOT = str(tmp_path / "media")
    aigc(
        COPY_BACKENDS={"default": {"BACKEND": DUMMY_COPY, "OPTIONS": {}}},
        IMAGE_BACKENDS={"default": {"BACKEND": DUMMY_IMAGE}},
        GENERATION=getattr(request.module, "DUMMY_GENERATION", {}),
    )
    backends.reset()
    yield
    backends.reset()


BROWSER_UA = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/126.0 Safari/537.36"
)


@pytest.fixture
def browser() -> Client:
    """A test client that looks like a person's browser (no UA reads as a bot)."""
    return Client(headers={"User-Agent": BROWSER_UA})


# Browser tests: Playwright's Python client drives Debian's Chromium (scripts/test installs
# it), not a browser downloaded by Playwright.
CHROMIUM = "/usr/bin/chromium"
BROWSER_TIMEOUT_MS = 15_000
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts" / "screenshots"


@pytest.fixture
def screenshots(request: pytest.FixtureRequest) -> Path:
    """This test's screenshot folder, test-artifacts/screenshots/<test name>/, emptied first.

    Tests save their own screenshots here; the browser fixtures add each page's last state.
    """
    folder = ARTIFACTS / re.sub(r"[^\w.-]+", "_", request.node.name).strip("_")
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    return folder


@pytest.fixture
def chromium(monkeypatch: pytest.MonkeyPatch) -> Iterator[Browser]:
    """Headless Chromium for one test.

    Playwright's sync API keeps an asyncio loop running in this thread while it is started,
    which makes Django refuse ORM calls from the test ("async context"); the test code is
    synchronous, so DJANGO_ALLOW_ASYNC_UNSAFE is set for the test only. Playwright starts
    and stops per test for the same reason: a loop left running would leak into other tests.
    Use it with ``live_server`` (a transactional test): Django opens fresh database
    connections while the loop runs, so rows made in a plain ``db`` test's transaction
    before the browser started would not be seen.
    """
    if not os.access(CHROMIUM, os.X_OK):
        missing_service(
            f"browser tests need Chromium at {CHROMIUM}: "
            "apt-get install chromium chromium-driver (scripts/test does it as root)"
        )
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as exc:
        missing_service(f"browser tests need Playwright (the dev extra): {exc}")
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=["--no-sandbox"]
        )
        try:
            yield browser
        finally:
            browser.close()
            # With Playwright's loop running, Django keeps this thread's database connections
            # apart from the ones it had before: close those before the loop stops, or they
            # leak (and PostgreSQL refuses to drop a test database a leaked session holds).
            connections.close_all()


@pytest.fixture
def new_page(chromium: Browser, screenshots: Path) -> Iterator[Callable[[str], Page]]:
    """Opens a page in a fresh browser context (its own cookies: one person each):
    ``editor = new_page("editor")``. Teardown saves each page's last state as
    ``<name>-last.png`` in the test's screenshot folder, whether the test passed or not."""
    from playwright.sync_api import Error

    pages: list[tuple[str, Page]] = []

    def open_page(name: str = "page") -> Page:
        context = chromium.new_context(viewport={"width": 1280, "height": 900})
        context.set_default_timeout(BROWSER_TIMEOUT_MS)
        page = context.new_page()
        pages.append((name, page))
        return page

    yield open_page
    for name, page in pages:
        with contextlib.suppress(Error):  # a page that crashed has nothing left to show
            page.screenshot(path=screenshots / f"{name}-last.png", full_page=True)
        page.context.close()


@pytest.fixture
def chromium_page(new_page: Callable[[str], Page]) -> Page:
    """One page in headless Chromium; its last state is saved as a screenshot."""
    return new_page("page")


def closed_port() -> int:
    """A local TCP port nothing listens on: bound, then closed again."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def broker_down():
    """The Celery broker at a closed port, tasks sent for real (not run eagerly); call the
    fixture's value to bring the broker back."""
    from aigc_django.tasks import flush_events

    app = flush_events.app
    saved = app.conf.broker_url

    def point(url: str, eager: bool) -> None:
        app.conf.broker_url = url
        app.conf.task_always_eager = eager
        # Celery keeps its broker connections in pools made from the URL they were first
        # made with: forget them so the next send connects to ``url``. (Not closed: kombu
        # hands a closed pool out again for the same URL.)
        app._pool = None
        app.amqp._producer_pool = None

    point(f"redis://127.0.0.1:{closed_port()}/0", eager=False)
    yield lambda: point(saved, eager=True)
    point(saved, eager=True)


def runners_and_slots(top_items: list[str], *, brief: str = "", copy_slot: bool = False) -> dict:
    """The "runners" segment and the "home-hero" banner slot the generation tests share:
    ``{"runners": ..., "banner": ...}``, and ``"copy"``, the "home-copy" copy slot, with
    ``copy_slot=True`` (made before the banner). ``top_items`` are the segment's top
    items, ``brief`` the banner's brief."""
    from aigc_django.models import Segment, Slot

    made = {
        "runners": Segment.objects.create(
            key="runners",
            name="Runners",
            top_categories=[["running-shoes", 0.8]],
            top_items=top_items,
        )
    }
    if copy_slot:
        made["copy"] = Slot.objects.create(
            key="home-copy",
            name="Home copy",
            kind=Slot.Kind.COPY,
            copy_fields={"headline": 50, "cta": 20},
            variants_per_segment=3,
        )
    made["banner"] = Slot.objects.create(
        key="home-hero",
        name="Home hero",
        kind=Slot.Kind.BANNER,
        sizes=[[600, 200], [300, 250]],
        copy_fields={"headline": 50, "body": 120, "cta": 20},
        variants_per_segment=2,
        brief=brief,
    )
    return made


def superuser_client(
    username: str = "admin", email: str | None = "admin@example.com", **options
) -> Client:
    """A test client (made with ``options``) logged in as a new superuser."""
    from django.contrib.auth.models import User

    user = User.objects.create_superuser(username, email, "pw")
    client = Client(**options)
    client.force_login(user)
    return client
