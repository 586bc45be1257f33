"""Fixtures for the real services: PostgreSQL (through AIGC_TEST_DB), Redis and Celery.

Tests that need a service are skipped when it is missing, as on a laptop without them.
With AIGC_REQUIRE_SERVICES=1 (CI) a missing service fails the run instead.
"""

from __future__ import annotations

import os

import pytest
from django.conf import settings
from django.db import connection
from django.test import Client

from aigc_django.tracking import ingest
from tests.celery_app import app as celery_app  # noqa: F401  (the project's Celery app)

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


@pytest.fixture
def aigc(settings):
    """Change AIGC options for one test: ``aigc(INGEST={"MODE": "buffered"})``."""

    def change(**options):
        settings.AIGC = {**settings.AIGC, **options}

    return change


BROWSER_UA = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/126.0 Safari/537.36"
)


@pytest.fixture
def browser() -> Client:
    """A test client that looks like a person's browser (no UA reads as a bot)."""
    return Client(headers={"User-Agent": BROWSER_UA})
