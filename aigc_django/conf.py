"""The ``AIGC`` settings dict, read at call time.

Every option lives under one dict in the project's settings::

    AIGC = {
        "CATALOG": {"MODEL": "shop.Product", "FIELDS": {"key": "sku", ...}},
        "CONSENT": {"MODE": "required"},
    }

``aigc_settings.CONSENT["MODE"]`` returns the project's value merged over the default.
Values are looked up on every access and the cache is dropped on ``setting_changed``, so
``override_settings(AIGC=...)`` works in tests. Unknown keys raise ``ImproperlyConfigured``
naming the key (the system checks report the same as ``aigc_django.E002``).
"""

from __future__ import annotations

import copy
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.utils.module_loading import import_string

# Nested dicts are merged key by key with the project's values; every other value is replaced.
DEFAULTS: dict[str, Any] = {
    # Maps the host project's product model to what the app needs. See aigc_django.catalog.
    "CATALOG": None,
    "VISITOR_COOKIE": {
        "NAME": "aigc_vid",
        "AGE": int(timedelta(days=365).total_seconds()),
        "SECURE": False,
        "SAMESITE": "Lax",
        "DOMAIN": None,
    },
    "CONSENT": {
        # "implied": track unless the visitor said no; "required": track only after a yes.
        "MODE": "implied",
        # Cookie holding the visitor's answer: "1"/"yes"/"granted" or "0"/"no"/"denied".
        "COOKIE": "aigc_consent",
        # Optional dotted path to ``f(request) -> bool | None``; None falls back to the cookie.
        "CHECK": None,
    },
    "HONOR_DO_NOT_TRACK": True,
    "HONOR_GLOBAL_PRIVACY_CONTROL": True,
    # Case-insensitive regular expressions matched against the User-Agent header.
    "BOT_USER_AGENTS": [
        r"bot\b",
        r"bot/",
        r"crawl",
        r"spider",
        r"slurp",
        r"facebookexternalhit",
        r"^curl/",
        r"^wget/",
        r"python-requests",
        r"python-urllib",
        r"httpclient",
        r"scrapy",
        r"lighthouse",
        r"pingdom",
        r"uptime",
    ],
    # Extra event kinds the project records besides the builtin ones.
    "CUSTOM_EVENT_KINDS": [],
    "INGEST": {
        # "direct": every track() writes at once; "buffered": events collect in a buffer and
        # are written in bulk (PostgreSQL COPY) by size, by the flush task and at shutdown.
        "MODE": "direct",
        # Where buffered events wait: "memory" (per process) or a redis:// URL (shared and
        # durable across process deaths).
        "BUFFER": "memory",
        "BATCH_SIZE": 5000,
        # Seconds a memory buffer may hold an event before the next track() flushes it.
        "FLUSH_INTERVAL": 5,
        # Seconds after which a batch that a flusher took but never finished is written again.
        "RECOVER_AFTER": 300,
        "REDIS_KEY_PREFIX": "aigc:events",
    },
    "API": {
        "MAX_EVENTS_PER_BATCH": 500,
        "MAX_REQUEST_BYTES": 256 * 1024,
        "MAX_PROPERTIES_BYTES": 4 * 1024,
        # DRF rate string per visitor (or per token for server-to-server calls).
        "INGEST_RATE": "120/min",
        # A looser limit per client address (many visitors can share one behind a NAT).
        "INGEST_RATE_PER_ADDRESS": "1200/min",
        # Secrets accepted in "Authorization: Token <secret>" for server-to-server ingestion.
        "TOKENS": [],
    },
    "RETENTION_DAYS": 395,
    "PROFILES": {
        # Interest in a category halves every HALF_LIFE_DAYS without new activity.
        "HALF_LIFE_DAYS": 14.0,
        # How much one event of each kind says about interest; kinds not listed count 0.
        "KIND_WEIGHTS": {
            "category_view": 1.0,
            "product_view": 1.0,
            "search": 1.5,
            "click": 2.0,
            "add_to_cart": 4.0,
            "remove_from_cart": -1.0,
            "purchase": 8.0,
        },
        # Visitors with fewer events stay in the "everyone" segment.
        "MIN_EVENTS": 3,
        # Learned segments: a fixed number, or None to choose between K_MIN and K_MAX.
        "SEGMENTS": None,
        "K_MIN": 2,
        "K_MAX": 12,
        # A new cluster keeps an old segment's key when their centroids are this close.
        "MATCH_DISTANCE": 0.6,
        "FACTORS": 32,
        "ALS_ITERATIONS": 15,
        "ALS_REGULARIZATION": 0.05,
        "ALS_ALPHA": 2.0,
        "TOP_ITEMS": 10,
        "SEED": 0,
        # "auto" uses CUDA when torch sees a GPU; or "cpu", "cuda", "cuda:1"...
        "DEVICE": "auto",
        # Seconds a visitor's segment stays in the cache (bumped on every rebuild).
        "LOOKUP_TIMEOUT": 3600,
    },
    # Where the app keeps the models it trains; None: MEDIA_ROOT/aigc-models.
    "MODEL_DIR": None,
    # The Celery queue for the app's CPU tasks.
    "CELERY_QUEUE": "aigc",
    # Copy and image backends by alias, configured like CACHES; "default" is required.
    "COPY_BACKENDS": {
        "default": {
            "BACKEND": "aigc_django.generation.backends.builtin_copy.BuiltinCopyBackend",
            "OPTIONS": {},
        },
    },
    "IMAGE_BACKENDS": {
        "default": {
            "BACKEND": "aigc_django.generation.backends.builtin_image.BuiltinImageBackend",
            "OPTIONS": {},
        },
    },
    # What generated content says and looks like for this shop.
    "BRAND": {
        "NAME": "",
        # A few words on tone, put into every brief ("warm, playful, no jargon").
        "VOICE": "",
        # Brand colours as "#rrggbb"; backgrounds and call-to-action buttons use them.
        "COLORS": ["#1f2937", "#f59e0b", "#f3f4f6"],
        # Path of the logo image drawn on banners (PNG with transparency works best).
        "LOGO": None,
        # Paths of TrueType/OpenType fonts; None uses the font that ships with Pillow.
        "FONT": None,
        "BOLD_FONT": None,
        # Copy containing these words (whole words, any case) or regular expressions is
        # flagged for the editor, never published unreviewed.
        "BANNED_WORDS": [],
        "BANNED_PATTERNS": [],
    },
    "GENERATION": {
        # The Celery queue of generation tasks (run by GPU workers where there are GPUs).
        "QUEUE": "aigc_gpu",
        # Briefs per backend call; halved on out-of-memory down to 1.
        "BATCH_SIZE": 8,
        # Candidates the builtin copy model samples per variant, best kept.
        "CANDIDATES": 4,
        # Seconds: soft limit (the job stops and retries) and hard limit (the worker is killed).
        "SOFT_TIME_LIMIT": 900,
        "TIME_LIMIT": 1200,
        "MAX_RETRIES": 3,
        # Seconds before the first retry of a transient error; doubles each time.
        "RETRY_BACKOFF": 30,
        # Banner files: a WebP master and a fallback ("JPEG" or "PNG"), plus srcset widths.
        "IMAGE_FORMAT": "WEBP",
        "FALLBACK_FORMAT": "JPEG",
        "RENDITION_WIDTHS": [480, 960],
        "QUALITY": 85,
        # Sizes used when a banner slot names none.
        "DEFAULT_SIZES": [[1200, 628]],
    },
    # The learned layout model (aigc_train layout); see docs/banners.md.
    "LAYOUT": {
        # Banners use the active layout model when there is one (False: fixed layouts only).
        "ENABLED": True,
        # Layouts sampled per banner; the first one that repairs is used, else the fixed one.
        "CANDIDATES": 8,
        # Layouts the composer makes for training (varied sizes, copy and products); 0 trains
        # on the layouts of approved and clicked variants only.
        "SYNTHETIC": 1500,
        # Training stops with an error below this many layouts (the previous model stays).
        "MIN_LAYOUTS": 200,
        # Passes over the training layouts.
        "EPOCHS": 40,
    },
    "MODERATION": {
        # Off (None) by default: every variant waits for an editor. "safe" approves variants
        # whose safety report has no flag; or a dotted path to ``f(variant) -> bool`` (or the
        # function itself). Applied once, when generation stores a variant; edited variants
        # always wait for an editor. Each automatic approval is logged as a review by the
        # system (no reviewer). See docs/moderation.md.
        "AUTO_APPROVE": None,
    },
    "DELIVERY": {
        # A visitor keeps the variant a slot showed them for this many seconds (no flicker).
        "STICKY_SECONDS": 1800,
        # Seconds the approved variants of a slot stay cached (bumped on every review).
        "CACHE_TIMEOUT": 3600,
        # Render a placeholder that the tracking script fills from the API (pages behind a
        # CDN or a full-page cache) instead of the variant itself.
        "CLIENT_MODE": False,
        # A purchase within this many hours of a click on a variant counts as its conversion.
        "CONVERSION_WINDOW_HOURS": 24,
        # Query parameter with which staff preview a variant on the real page.
        "PREVIEW_PARAMETER": "aigc_preview",
        # Seconds each process collects impressions before writing them to the cache in one
        # go (0: at once). A process that dies loses at most this long of its impressions.
        "IMPRESSION_BATCH_SECONDS": 1.0,
    },
}

# Options whose keys are the project's own names (backend aliases), not known sub-keys.
FREE_KEYS: set[str] = {"COPY_BACKENDS", "IMAGE_BACKENDS"}

# Options whose string values are dotted import paths, imported on access.
IMPORT_STRINGS: set[tuple[str, ...]] = {("CONSENT", "CHECK")}


class AigcSettings:
    """Attribute access to ``settings.AIGC`` merged over :data:`DEFAULTS`."""

    def __init__(self) -> None:
        self._cache: dict[str, Any] = {}

    @property
    def user_settings(self) -> dict[str, Any]:
        value = getattr(settings, "AIGC", {})
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise ImproperlyConfigured(
                f"The AIGC setting must be a dict, not {type(value).__name__}."
            )
        return value

    def unknown_keys(self) -> list[str]:
        """Dotted names of keys in ``settings.AIGC`` that the app does not know."""
        found = []
        for key, value in self.user_settings.items():
            if key not in DEFAULTS:
                found.append(key)
            elif key in FREE_KEYS:
                continue
            elif isinstance(DEFAULTS[key], dict) and isinstance(value, dict):
                found += [f"{key}.{sub}" for sub in value if sub not in DEFAULTS[key]]
        return found

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_") or name not in DEFAULTS:
            raise AttributeError(f"Unknown AIGC setting: {name!r}")
        if name in self._cache:
            return self._cache[name]
        unknown = self.unknown_keys()
        if unknown:
            raise ImproperlyConfigured(
                f"Unknown key(s) in settings.AIGC: {', '.join(sorted(unknown))}. "
                f"Known keys: {', '.join(sorted(DEFAULTS))}."
            )
        default = DEFAULTS[name]
        value = self.user_settings.get(name, default)
        if isinstance(default, dict) and isinstance(value, dict) and name not in FREE_KEYS:
            value = {**copy.deepcopy(default), **value}
        self._cache[name] = value
        return value

    def imported(self, *path: str) -> Any:
        """The object a dotted-path option names (None when the option is None)."""
        value: Any = getattr(self, path[0])
        for part in path[1:]:
            value = value[part]
        if value is None or callable(value):
            return value
        if not isinstance(value, str):
            raise ImproperlyConfigured(
                f"AIGC[{']['.join(repr(p) for p in path)}] = {value!r} is not a dotted path."
            )
        # Cached like every option: the consent check is read on every request.
        key = "import:" + ".".join(path)
        if key in self._cache:
            return self._cache[key]
        try:
            self._cache[key] = import_string(value)
            return self._cache[key]
        except ImportError as exc:
            raise ImproperlyConfigured(
                f"AIGC[{']['.join(repr(p) for p in path)}] = {value!r} cannot be imported: {exc}"
            ) from exc

    def reload(self) -> None:
        self._cache.clear()


aigc_settings = AigcSettings()


def _reload_on_change(*, setting: str, **kwargs: Any) -> None:
    if setting == "AIGC":
        aigc_settings.reload()
        from aigc_django import catalog
        from aigc_django.tracking import ingest

        catalog.get_catalog.cache_clear()
        ingest.reset_buffer()


setting_changed.connect(_reload_on_change)
