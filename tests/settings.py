"""Test settings: SQLite by default; AIGC_TEST_DB=postgres for PostgreSQL on 127.0.0.1."""

import os
import tempfile

SECRET_KEY = "tests-only-secret-key-not-for-production-0123456789"
DEBUG = False
ALLOWED_HOSTS = ["*"]
USE_TZ = True
TIME_ZONE = "UTC"
ROOT_URLCONF = "tests.urls"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "aigc_django",
    "tests.shopapp",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "aigc_django.tracking.middleware.VisitorMiddleware",
]

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]

if os.environ.get("AIGC_TEST_DB", "sqlite") == "postgres":
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.postgresql",
            "HOST": os.environ.get("AIGC_TEST_PG_HOST", "127.0.0.1"),
            "PORT": os.environ.get("AIGC_TEST_PG_PORT", "5432"),
            "USER": os.environ.get("AIGC_TEST_PG_USER", "postgres"),
            "NAME": os.environ.get("AIGC_TEST_PG_NAME", "test"),
            # Engineers sharing one server each name their own test database.
            "TEST": {"NAME": os.environ.get("AIGC_TEST_PG_TEST_NAME", "test_aigc_django")},
        }
    }
    if os.environ.get("AIGC_TEST_USE_TEST_DB"):
        # A Celery worker started by a test must see the test database.
        DATABASES["default"]["NAME"] = "test_aigc_django"
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": os.environ.get("AIGC_TEST_SQLITE_NAME", ":memory:"),
        }
    }

CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
STATIC_URL = "/static/"
MEDIA_URL = "/media/"
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

REDIS_URL = os.environ.get("AIGC_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
CELERY_BROKER_URL = REDIS_URL
CELERY_TASK_ALWAYS_EAGER = True
CELERY_BROKER_CONNECTION_TIMEOUT = 2

AIGC = {
    "CATALOG": {
        "MODEL": "shopapp.Product",
        "FIELDS": {
            "key": "sku",
            "title": "name",
            "description": "description",
            "price": "price",
            "image": "image",
            "category": "category__slug",
            "url": "get_absolute_url",
        },
    },
    "API": {"TOKENS": ["server-token-for-tests-0123456789abcdef"], "INGEST_RATE": None},
    "CUSTOM_EVENT_KINDS": ["newsletter_signup"],
    # Impressions counted at once, so tests see them without waiting for a batch.
    "DELIVERY": {"IMPRESSION_BATCH_SECONDS": 0},
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {"aigc_django": {"handlers": ["console"], "level": "WARNING"}},
}

# A Celery worker started by a test shares the test's Redis buffer.
if os.environ.get("AIGC_TEST_INGEST_BUFFER"):
    AIGC["INGEST"] = {
        "MODE": "buffered",
        "BUFFER": os.environ["AIGC_TEST_INGEST_BUFFER"],
        "RECOVER_AFTER": int(os.environ.get("AIGC_TEST_RECOVER_AFTER", "300")),
    }

MEDIA_ROOT = os.environ.get(
    "AIGC_TEST_MEDIA_ROOT", os.path.join(tempfile.gettempdir(), "aigc-test-media")
)

# A Celery worker started by a generation test uses the dummy backends, slowed down so the
# test can kill it mid-job, and gets its unacknowledged jobs back after a few seconds.
if os.environ.get("AIGC_TEST_GENERATION_DELAY"):
    AIGC["COPY_BACKENDS"] = {
        "default": {
            "BACKEND": "aigc_django.generation.backends.dummy.DummyCopyBackend",
            "OPTIONS": {"DELAY": float(os.environ["AIGC_TEST_GENERATION_DELAY"])},
        }
    }
    AIGC["IMAGE_BACKENDS"] = {
        "default": {"BACKEND": "aigc_django.generation.backends.dummy.DummyImageBackend"}
    }
    AIGC["GENERATION"] = {"BATCH_SIZE": 2, "RETRY_BACKOFF": 1}
if os.environ.get("AIGC_TEST_VISIBILITY_TIMEOUT"):
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "visibility_timeout": int(os.environ["AIGC_TEST_VISIBILITY_TIMEOUT"])
    }
