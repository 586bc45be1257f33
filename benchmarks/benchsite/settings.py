"""Settings of the benchmark site: PostgreSQL and Redis on 127.0.0.1, no catalog.

Environment variables (the benchmark scripts set them; defaults in brackets):

* ``AIGC_BENCH_DB`` [aigc_bench]: the PostgreSQL database, created and migrated by the scripts.
* ``AIGC_BENCH_PG_HOST`` [127.0.0.1], ``AIGC_BENCH_PG_PORT`` [5432], ``AIGC_BENCH_PG_USER``
  [postgres].
* ``AIGC_BENCH_INGEST_MODE`` [direct]: ``AIGC["INGEST"]["MODE"]``, "direct" or "buffered".
* ``AIGC_BENCH_REDIS`` [redis://127.0.0.1:6379/14]: the event buffer and the Celery broker.
"""

import os

SECRET_KEY = "benchmarks-only-secret-key-not-for-production-0123456789"
DEBUG = False  # DEBUG=True would keep every query in memory and skew the ORM peer.
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
USE_TZ = True
TIME_ZONE = "UTC"
ROOT_URLCONF = "benchmarks.benchsite.urls"
WSGI_APPLICATION = "benchmarks.benchsite.wsgi.application"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

INSTALLED_APPS = [
    "django.contrib.auth",  # Visitor.user points at the user model
    "django.contrib.contenttypes",
    "rest_framework",
    "aigc_django",
]

# The same stack serves the app's endpoint and the peer endpoint.
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.common.CommonMiddleware",
    "aigc_django.tracking.middleware.VisitorMiddleware",
]

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        "HOST": os.environ.get("AIGC_BENCH_PG_HOST", "127.0.0.1"),
        "PORT": os.environ.get("AIGC_BENCH_PG_PORT", "5432"),
        "USER": os.environ.get("AIGC_BENCH_PG_USER", "postgres"),
        "NAME": os.environ.get("AIGC_BENCH_DB", "aigc_bench"),
        # Persistent connections, as a production site would use; the same for both endpoints.
        "CONN_MAX_AGE": 60,
    }
}

CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

REST_FRAMEWORK = {
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "DEFAULT_AUTHENTICATION_CLASSES": [],
    "DEFAULT_PERMISSION_CLASSES": [],
    "UNAUTHENTICATED_USER": None,
}

REDIS_URL = os.environ.get("AIGC_BENCH_REDIS", "redis://127.0.0.1:6379/14")
CELERY_BROKER_URL = REDIS_URL
CELERY_BROKER_CONNECTION_TIMEOUT = 2

BENCH_TOKEN = "bench-server-token-0123456789abcdef0123456789"

AIGC = {
    "API": {"TOKENS": [BENCH_TOKEN], "INGEST_RATE": None, "MAX_EVENTS_PER_BATCH": 500},
    "INGEST": {
        "MODE": os.environ.get("AIGC_BENCH_INGEST_MODE", "direct"),
        "BUFFER": REDIS_URL,
        "REDIS_KEY_PREFIX": "aigc-bench:events",
    },
}

# A catalog-free site is deliberate here.
SILENCED_SYSTEM_CHECKS = ["aigc_django.W003"]

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {
        "aigc_django": {"handlers": ["console"], "level": "WARNING"},
        "django.request": {"handlers": ["console"], "level": "ERROR", "propagate": False},
    },
}
