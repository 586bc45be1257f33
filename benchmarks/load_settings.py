"""Settings of the load benchmark (``benchmarks/load_visitors.py``): the example storefront
(``example_project/``, on ``PYTHONPATH``) deployed the way a busy shop would run it.

* PostgreSQL database ``AIGC_LOAD_DB`` [aigc_bench_load] on 127.0.0.1 (persistent
  connections), ``DEBUG`` off.
* Redis ``AIGC_LOAD_REDIS`` [redis://127.0.0.1:6379/12] as the Django cache (throttles,
  slot and segment caches, the delivery counters), the event buffer
  (``INGEST["MODE"] = "buffered"``) and the Celery broker; a Celery worker on the ``aigc``
  queue and Celery beat (the app's ``beat_schedule()``) flush the events and the counters.
* Behind a proxy: ``REST_FRAMEWORK["NUM_PROXIES"] = 1``, so the per-address ingest limit
  counts the client address a reverse proxy puts in ``X-Forwarded-For`` (the load generator
  sends one per simulated visitor, as every visitor on loopback is 127.0.0.1).

``AIGC_LOAD_PHASE=prepare`` (the benchmark's own process while it builds the shop with
``prepare_demo``) writes events directly and runs Celery tasks in-process instead.
``STOREFRONT_DATA_DIR`` (media, trained models) is a temporary folder set by the script.
"""

import os

from storefront.settings import *  # noqa: F403
from storefront.settings import AIGC

PREPARE = os.environ.get("AIGC_LOAD_PHASE") == "prepare"

DEBUG = False
SECRET_KEY = "load-benchmark-only-secret-key-not-for-production-0123456789abcdef"
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        "HOST": os.environ.get("AIGC_BENCH_PG_HOST", "127.0.0.1"),
        "PORT": os.environ.get("AIGC_BENCH_PG_PORT", "5432"),
        "USER": os.environ.get("AIGC_BENCH_PG_USER", "postgres"),
        "NAME": os.environ.get("AIGC_LOAD_DB", "aigc_bench_load"),
        "CONN_MAX_AGE": 60,
    }
}

REDIS_URL = os.environ.get("AIGC_LOAD_REDIS", "redis://127.0.0.1:6379/12")
CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": "aigc-load",
    }
}

CELERY_BROKER_URL = None if PREPARE else REDIS_URL
CELERY_TASK_ALWAYS_EAGER = PREPARE
CELERY_WORKER_HIJACK_ROOT_LOGGER = False

REST_FRAMEWORK = {"NUM_PROXIES": 1}

AIGC = {
    **AIGC,
    "INGEST": (
        {"MODE": "direct"}
        if PREPARE
        else {"MODE": "buffered", "BUFFER": REDIS_URL, "REDIS_KEY_PREFIX": "aigc-load:events"}
    ),
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {
        "aigc_django": {"handlers": ["console"], "level": "WARNING"},
        "django.request": {"handlers": ["console"], "level": "ERROR", "propagate": False},
    },
}
