"""The Celery app a test worker runs: ``celery -A tests.celery_app worker``.

``AIGC_TEST_WORKER_DIES`` makes the worker process die at a chosen point of a flush, the way
a worker killed by the OOM killer or a deploy would: ``after_take`` (the batch is out of
the queue, nothing written) or ``after_commit`` (written, not yet cleared from Redis).
"""

import os

import django
from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
django.setup()

app = Celery("aigc_tests")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks(["aigc_django"])

_dies = os.environ.get("AIGC_TEST_WORKER_DIES")
if _dies:
    from aigc_django.tracking import ingest

    def _die_after(function):
        def wrapper(*args, **kwargs):
            result = function(*args, **kwargs)
            os._exit(9)
            return result

        return wrapper

    if _dies == "after_take":
        ingest.RedisBuffer.take = _die_after(ingest.RedisBuffer.take)
    elif _dies == "after_commit":
        ingest.write_events = _die_after(ingest.write_events)
