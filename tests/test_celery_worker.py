"""A real Celery worker process, the Redis broker and PostgreSQL: flushes that lose and
duplicate nothing, even when the worker dies mid-task."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.db import connection

from aigc_django import track
from aigc_django.models import Event, IngestBatch
from aigc_django.tasks import flush_events
from aigc_django.tracking import ingest
from tests.conftest import missing_service

pytestmark = [pytest.mark.services, pytest.mark.django_db(transaction=True)]

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def worker_env(redis_url, aigc, settings) -> dict[str, str]:
    if connection.vendor != "postgresql":
        missing_service("a worker process needs a shared database: run with AIGC_TEST_DB=postgres")
    aigc(INGEST={"MODE": "buffered", "BUFFER": redis_url, "BATCH_SIZE": 50, "RECOVER_AFTER": 1})
    return {
        **os.environ,
        "AIGC_TEST_DB": "postgres",
        "AIGC_TEST_USE_TEST_DB": "1",
        "AIGC_TEST_INGEST_BUFFER": redis_url,
        "AIGC_TEST_RECOVER_AFTER": "1",
        "PYTHONPATH": str(ROOT),
    }


def start_worker(env: dict[str, str], **extra: str) -> subprocess.Popen:
    command = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "tests.celery_app",
        "worker",
        "-Q",
        "aigc",
        "--pool",
        "solo",
        "--loglevel",
        "WARNING",
        "--without-gossip",
        "--without-mingle",
        "--without-heartbeat",
    ]
    return subprocess.Popen(command, env={**env, **extra}, cwd=ROOT)


@pytest.fixture
def send_to_broker() -> Iterator[None]:
    flush_events.app.conf.task_always_eager = False
    yield
    flush_events.app.conf.task_always_eager = True


def wait_for(predicate, timeout: float = 60.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return False


def buffered_events(count: int) -> None:
    visitors = [uuid.uuid4() for _ in range(7)]
    for i in range(count):
        track(None, "product_view", item=f"sku-{i}", visitor=visitors[i % 7])


def stop(worker: subprocess.Popen) -> None:
    if worker.poll() is None:
        worker.terminate()
        try:
            worker.wait(timeout=20)
        except subprocess.TimeoutExpired:
            worker.kill()


def test_worker_flushes_the_redis_buffer(worker_env, send_to_broker):
    worker = start_worker(worker_env)
    try:
        buffered_events(120)  # reaching BATCH_SIZE schedules flushes on the worker
        flush_events.apply_async(queue="aigc")  # what beat sends for the remainder
        assert wait_for(lambda: Event.objects.count() == 120), Event.objects.count()
        assert len(ingest.get_buffer()) == 0
    finally:
        stop(worker)
    assert Event.objects.values("item_key").distinct().count() == 120


@pytest.mark.parametrize("dies", ["after_take", "after_commit"])
def test_worker_dying_mid_flush_loses_and_duplicates_nothing(worker_env, send_to_broker, dies):
    buffered = 40  # under BATCH_SIZE: only the task we send flushes
    buffered_events(buffered)
    doomed = start_worker(worker_env, AIGC_TEST_WORKER_DIES=dies)
    try:
        flush_events.apply_async(queue="aigc")
        assert doomed.wait(timeout=60) == 9
    finally:
        stop(doomed)
    assert Event.objects.count() == (buffered if dies == "after_commit" else 0)
    assert len(ingest.get_buffer()) == 0  # the batch left the queue with the worker

    time.sleep(1.5)  # RECOVER_AFTER: the batch is now an orphan
    worker = start_worker(worker_env)
    try:
        flush_events.apply_async(queue="aigc")
        assert wait_for(lambda: not ingest.get_buffer().stale())
        assert wait_for(lambda: Event.objects.count() == buffered)
        time.sleep(1)
    finally:
        stop(worker)
    assert Event.objects.count() == buffered
    assert Event.objects.values("item_key").distinct().count() == buffered
    assert IngestBatch.objects.count() == 1
