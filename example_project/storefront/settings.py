"""Settings of the example storefront: a small shop that uses aigc_django as a user would.

Meant for a laptop demo. Environment variables:

* ``DJANGO_DEBUG``: "1" (default) or "0".
* ``DJANGO_SECRET_KEY``: required in spirit whenever DEBUG is off.
* ``DJANGO_ALLOWED_HOSTS``: comma-separated host names (default: localhost only).
* ``CELERY_BROKER_URL``: a broker such as ``redis://127.0.0.1:6379/0``. Unset (the default),
  Celery tasks run eagerly inside the process that sends them; set, they go to workers.
"""

import os
from pathlib import Path

from aigc_django.tasks import beat_schedule, task_routes

BASE_DIR = Path(__file__).resolve().parent.parent
DATA_DIR = Path(os.environ.get("STOREFRONT_DATA_DIR") or BASE_DIR)


def env_flag(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


DEBUG = env_flag("DJANGO_DEBUG", True)
SECRET_KEY = os.environ.get(
    "DJANGO_SECRET_KEY", "django-insecure-example-storefront-only-for-local-demos"
)
ALLOWED_HOSTS = [
    host.strip()
    for host in os.environ.get("DJANGO_ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]").split(",")
    if host.strip()
]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "aigc_django",
    "shop",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # After the session and auth middleware: it gives every tracked browser a visitor id.
    "aigc_django.tracking.middleware.VisitorMiddleware",
]

ROOT_URLCONF = "storefront.urls"
WSGI_APPLICATION = "storefront.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "shop.context_processors.shop",
            ],
        },
    },
]

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        # STOREFRONT_DATA_DIR moves the database, media and models (the tests use it).
        "NAME": DATA_DIR / "db.sqlite3",
    }
}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
MEDIA_URL = "media/"
MEDIA_ROOT = DATA_DIR / "media"

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Celery -------------------------------------------------------------------------------
# The Celery app is storefront/celery.py. With no broker configured, tasks run eagerly in
# the sending process (the embedded default); with one, they go to workers.
CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL") or None
CELERY_TASK_ALWAYS_EAGER = CELERY_BROKER_URL is None
CELERY_TASK_EAGER_PROPAGATES = True
# The app's tasks go to its queue (AIGC["CELERY_QUEUE"], "aigc" by default):
#   celery -A storefront worker -Q aigc
# Generation and copy-model training on "aigc_gpu" (a GPU worker where there is one), the
# rest on "aigc".
CELERY_TASK_ROUTES = task_routes()

# --- aigc_django --------------------------------------------------------------------------
AIGC = {
    "CATALOG": {
        "MODEL": "shop.Product",
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
    # Product pages post "wishlist" events from the browser to /aigc/api/events/.
    "CUSTOM_EVENT_KINDS": ["wishlist"],
    # Direct mode: every track() writes its event at once. Right for this demo: SQLite, low
    # traffic, and what a visitor just did is visible at once to every process (the admin,
    # `manage.py shell`, a second server). The "memory" buffer would keep events inside the
    # web process until BATCH_SIZE is reached or a later track() finds them older than
    # FLUSH_INTERVAL, so a quiet demo would show nothing new in the admin. A busy site would
    # use {"MODE": "buffered", "BUFFER": "redis://..."} with a broker, so that Celery beat
    # flushes the buffer in bulk.
    "INGEST": {"MODE": "direct"},
    # The models the app trains on this shop's data (kept out of MEDIA_ROOT, which is public).
    "MODEL_DIR": DATA_DIR / "aigc-models",
    # What generated banners and copy say and look like.
    "BRAND": {
        "NAME": "Northwind Goods",
        "VOICE": "friendly, practical, no hype",
        "COLORS": ["#14532d", "#f59e0b", "#f8fafc"],
        "LOGO": str(BASE_DIR / "shop" / "static" / "shop" / "logo.png"),
        "BANNED_WORDS": ["guaranteed", "miracle"],
    },
    # The default backends: the builtin copy model (trained by `manage.py aigc_train` on this
    # shop's own text) and procedural backgrounds. Generation runs in-process here, since
    # Celery is eager without a broker; on CPU, in small batches.
    "GENERATION": {"BATCH_SIZE": 4},
    # Backgrounds: "builtin" draws procedural ones; "gan" samples the image GAN that
    # `prepare_demo` trains on the product images (`manage.py aigc_train gan`), drawing
    # procedural ones until a model exists. STOREFRONT_IMAGES=gan makes it the default.
    "IMAGE_BACKENDS": {
        "builtin": {
            "BACKEND": "aigc_django.generation.backends.builtin_image.BuiltinImageBackend",
        },
        "gan": {
            "BACKEND": "aigc_django.generation.backends.gan_image.GanImageBackend",
            "OPTIONS": {"SMOOTHING": 1.0, "GRAIN": 0.015},
        },
    },
}
# "default" is the alias generation jobs use.
AIGC["IMAGE_BACKENDS"]["default"] = AIGC["IMAGE_BACKENDS"][
    "gan" if os.environ.get("STOREFRONT_IMAGES") == "gan" else "builtin"
]

# The app's periodic tasks: event flushes and the nightly retention purge.
CELERY_BEAT_SCHEDULE = beat_schedule(queue="aigc")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {"aigc_django": {"handlers": ["console"], "level": "INFO"}},
}
