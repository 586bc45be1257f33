"""Generation jobs on a real Celery worker process (Redis broker, PostgreSQL): progress while
a job runs, and a worker killed with SIGKILL mid-job whose job still ends with exactly the
requested number of variants."""

from __future__ import annotations

import os
import signal
import time

import pytest
from django.db import connection

from aigc_django.generation import service
from aigc_django.models import GenerationJob, Segment, Slot, Variant
from aigc_django.tasks import generate_variants
from tests.conftest import missing_service
from tests.test_celery_worker import ROOT, stop, wait_for

pytestmark = [pytest.mark.services, pytest.mark.django_db(transaction=True)]

VISIBILITY_TIMEOUT = 3  # seconds before a dead worker's unacknowledged job is delivered again


@pytest.fixture
def worker_env(redis_url, tmp_path) -> dict[str, str]:
    if connection.vendor != "postgresql":
        missing_service("a worker process needs a shared database: run with AIGC_TEST_DB=postgres")
    return {
        **os.environ,
        "AIGC_TEST_DB": "postgres",
        "AIGC_TEST_USE_TEST_DB": "1",
        "AIGC_TEST_GENERATION_DELAY": "0.4",  # seconds per variant; batches of 2
        "AIGC_TEST_VISIBILITY_TIMEOUT": str(VISIBILITY_TIMEOUT),
        "AIGC_TEST_MEDIA_ROOT": str(tmp_path / "media"),
        "PYTHONPATH": str(ROOT),
    }


@pytest.fixture
def send_to_broker():
    generate_variants.app.conf.task_always_eager = False
    yield
    generate_variants.app.conf.task_always_eager = True


def start_worker(env: dict[str, str]):
    import subprocess
    import sys

    command = [
        sys.executable, "-m", "celery", "-A", "tests.celery_app", "worker",
        "-Q", "aigc_gpu", "--pool", "solo", "--prefetch-multiplier", "1",
        "--loglevel", "WARNING", "--without-gossip", "--without-mingle", "--without-heartbeat",
    ]  # fmt: skip
    return subprocess.Popen(command, env=env, cwd=ROOT)


@pytest.fixture
def job() -> GenerationJob:
    segment = Segment.objects.create(key="runners", name="Runners")
    slot = Slot.objects.create(
        key="home-copy", name="Home copy", kind=Slot.Kind.COPY, copy_fields={"headline": 40}
    )
    return service.create_job(slot, segment, 6)


def test_job_runs_on_the_worker_and_reports_progress(worker_env, send_to_broker, job):
    worker = start_worker(worker_env)
    seen: set[float] = set()
    try:
        service.enqueue(job)  # outside a transaction: sent at once

        def finished() -> bool:
            job.refresh_from_db()
            if job.status == GenerationJob.Status.RUNNING:
                seen.add(job.progress)
            return job.status == GenerationJob.Status.SUCCEEDED

        assert wait_for(finished, timeout=90), (job.status, job.error)
    finally:
        stop(worker)
    assert any(0 < p < 1 for p in seen), seen  # progress moved while it ran
    assert job.progress == 1.0 and job.celery_task_id
    assert Variant.objects.filter(job=job).count() == 6


def test_worker_killed_mid_job_is_replaced_and_the_job_finishes_exactly(
    worker_env, send_to_broker, job
):
    doomed = start_worker(worker_env)
    try:
        service.enqueue(job)
        assert wait_for(lambda: Variant.objects.filter(job=job).count() >= 2, timeout=90)
        os.kill(doomed.pid, signal.SIGKILL)
        assert doomed.wait(timeout=30) == -signal.SIGKILL
    finally:
        stop(doomed)
    made_before = Variant.objects.filter(job=job).count()
    assert made_before < 6
    job.refresh_from_db()
    assert job.status == GenerationJob.Status.RUNNING  # nobody finished it

    time.sleep(VISIBILITY_TIMEOUT)
    worker = start_worker(worker_env)  # the restarted worker
    try:

        def finished() -> bool:
            job.refresh_from_db()
            return job.status == GenerationJob.Status.SUCCEEDED

        assert wait_for(finished, timeout=120), (job.status, job.error)
        time.sleep(1)  # a duplicate delivery would be making variants now
    finally:
        stop(worker)
    variants = Variant.objects.filter(job=job)
    assert variants.count() == 6
    assert sorted(variants.values_list("position", flat=True)) == [0, 1, 2, 3, 4, 5]
    assert job.attempts == 2
