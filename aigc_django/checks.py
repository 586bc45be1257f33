"""System checks for the ``AIGC`` settings. Every id is listed in docs/checks.md."""

from __future__ import annotations

import re
from pathlib import Path, PurePath
from typing import Any
from urllib.parse import urlparse

from django.conf import settings
from django.core.checks import CheckMessage, Error, Warning, register
from django.core.exceptions import ImproperlyConfigured

from aigc_django.catalog import mapping_problems
from aigc_django.conf import DEFAULTS, aigc_settings
from aigc_django.tracking.events import BUILTIN_KINDS, KIND_PATTERN

MIDDLEWARE_PATH = "aigc_django.tracking.middleware.VisitorMiddleware"
RATE_PATTERN = re.compile(r"^\d+/(s|sec|second|m|min|minute|h|hour|d|day)$")
POSITIVE_INTEGERS = (
    ("INGEST", "BATCH_SIZE"),
    ("INGEST", "FLUSH_INTERVAL"),
    ("INGEST", "RECOVER_AFTER"),
    ("API", "MAX_EVENTS_PER_BATCH"),
    ("API", "MAX_REQUEST_BYTES"),
    ("API", "MAX_PROPERTIES_BYTES"),
    ("VISITOR_COOKIE", "AGE"),
    ("RETENTION_DAYS",),
)


def _read(path: tuple[str, ...]) -> Any:
    value: Any = getattr(aigc_settings, path[0])
    for part in path[1:]:
        value = value[part]
    return value


def _name(path: tuple[str, ...]) -> str:
    return "AIGC" + "".join(f"[{p!r}]" for p in path)


def _list_option(name: str, what: str, check_id: str, errors: list[CheckMessage]) -> list:
    """The option's value when it is a list or tuple; else an error is added and [] returned."""
    value = getattr(aigc_settings, name)
    if isinstance(value, list | tuple):
        return list(value)
    errors.append(
        Error(
            f"AIGC['{name}'] is {value!r}.",
            hint=f"It must be {what}.",
            id=f"aigc_django.{check_id}",
        )
    )
    return []


@register("aigc_django")
def check_settings(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    raw = getattr(settings, "AIGC", {})
    if raw is not None and not isinstance(raw, dict):
        return [
            Error(
                f"The AIGC setting must be a dict, not {type(raw).__name__}.",
                hint='Set AIGC = {} or a dict of options, e.g. {"CONSENT": {"MODE": "implied"}}.',
                id="aigc_django.E001",
            )
        ]
    unknown = aigc_settings.unknown_keys()
    if unknown:
        return [
            Error(
                f"Unknown key {key!r} in settings.AIGC.",
                hint=f"Known keys: {', '.join(sorted(DEFAULTS))}. Check the spelling.",
                id="aigc_django.E002",
            )
            for key in unknown
        ]
    # Nested options of the wrong type make every later check meaningless.
    for key, default in DEFAULTS.items():
        if isinstance(default, dict) and not isinstance(getattr(aigc_settings, key), dict):
            return [
                Error(
                    f"{_name((key,))} must be a dict.",
                    hint=f"Known keys: {', '.join(sorted(default))}.",
                    id="aigc_django.E001",
                )
            ]

    errors: list[CheckMessage] = []
    catalog = aigc_settings.CATALOG
    if catalog is None:
        errors.append(
            Warning(
                "AIGC['CATALOG'] is not set: product events carry no category and generation "
                "has no products to write about.",
                hint='Map your product model: {"MODEL": "shop.Product", "FIELDS": {...}}.',
                id="aigc_django.W003",
            )
        )
    for option, message in mapping_problems(catalog):
        errors.append(
            Error(
                f"AIGC {option} {message}.",
                hint="See docs/settings.md#catalog for the field mapping.",
                id="aigc_django.E003",
            )
        )

    if aigc_settings.CONSENT["MODE"] not in ("implied", "required"):
        errors.append(
            Error(
                f"AIGC['CONSENT']['MODE'] is {aigc_settings.CONSENT['MODE']!r}.",
                hint='Use "implied" or "required".',
                id="aigc_django.E004",
            )
        )
    try:
        check = aigc_settings.imported("CONSENT", "CHECK")
        if check is not None and not callable(check):
            raise ImproperlyConfigured("AIGC['CONSENT']['CHECK'] does not name a callable.")
    except ImproperlyConfigured as exc:
        errors.append(
            Error(
                str(exc),
                hint="Give a dotted path to a function f(request) -> bool | None.",
                id="aigc_django.E005",
            )
        )

    ingest = aigc_settings.INGEST
    if ingest["MODE"] not in ("direct", "buffered"):
        errors.append(
            Error(
                f"AIGC['INGEST']['MODE'] is {ingest['MODE']!r}.",
                hint='Use "direct" or "buffered".',
                id="aigc_django.E006",
            )
        )
    buffer = ingest["BUFFER"]
    if buffer != "memory" and (
        not isinstance(buffer, str) or urlparse(buffer).scheme not in ("redis", "rediss", "unix")
    ):
        errors.append(
            Error(
                f"AIGC['INGEST']['BUFFER'] is {buffer!r}.",
                hint='Use "memory" or a Redis URL such as "redis://127.0.0.1:6379/0".',
                id="aigc_django.E007",
            )
        )
    elif ingest["MODE"] == "buffered" and buffer == "memory" and not settings.DEBUG:
        errors.append(
            Warning(
                "Buffered ingestion keeps events in each process's memory: a process that is "
                "killed loses up to BATCH_SIZE events.",
                hint='Point AIGC["INGEST"]["BUFFER"] at Redis, or use "MODE": "direct".',
                id="aigc_django.W002",
            )
        )

    for path in POSITIVE_INTEGERS:
        value = _read(path)
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            errors.append(
                Error(
                    f"{_name(path)} is {value!r}.",
                    hint="It must be a positive whole number.",
                    id="aigc_django.E008",
                )
            )

    kinds = _list_option("CUSTOM_EVENT_KINDS", 'a list, e.g. ["wishlist"]', "E009", errors)
    for kind in kinds:
        if not isinstance(kind, str) or not KIND_PATTERN.match(kind) or kind in BUILTIN_KINDS:
            errors.append(
                Error(
                    f"AIGC['CUSTOM_EVENT_KINDS'] has the invalid kind {kind!r}.",
                    hint="Kinds are lower-case slugs (a-z, 0-9, _; at most 40 characters) that "
                    f"are not builtin kinds ({', '.join(sorted(BUILTIN_KINDS))}).",
                    id="aigc_django.E009",
                )
            )

    for option in ("INGEST_RATE", "INGEST_RATE_PER_ADDRESS"):
        rate = aigc_settings.API[option]
        if rate is not None and (not isinstance(rate, str) or not RATE_PATTERN.match(rate)):
            errors.append(
                Error(
                    f"AIGC['API']['{option}'] is {rate!r}.",
                    hint='Use a DRF rate such as "120/min", or None for no limit.',
                    id="aigc_django.E010",
                )
            )

    patterns = _list_option("BOT_USER_AGENTS", "a list of regular expressions", "E011", errors)
    for pattern in patterns:
        try:
            re.compile(pattern)
        except (re.error, TypeError) as exc:
            errors.append(
                Error(
                    f"AIGC['BOT_USER_AGENTS'] has the invalid pattern {pattern!r}: {exc}.",
                    hint="Each entry is a Python regular expression.",
                    id="aigc_django.E011",
                )
            )

    samesite = aigc_settings.VISITOR_COOKIE["SAMESITE"]
    if samesite not in ("Lax", "Strict", "None", None):
        errors.append(
            Error(
                f"AIGC['VISITOR_COOKIE']['SAMESITE'] is {samesite!r}.",
                hint='Use "Lax", "Strict", "None" or None.',
                id="aigc_django.E012",
            )
        )
    if samesite == "None" and not aigc_settings.VISITOR_COOKIE["SECURE"]:
        errors.append(
            Error(
                "AIGC['VISITOR_COOKIE'] has SAMESITE 'None' without SECURE: browsers drop it.",
                hint='Set "SECURE": True, or use SAMESITE "Lax".',
                id="aigc_django.E012",
            )
        )

    tokens = aigc_settings.API["TOKENS"]
    if not isinstance(tokens, list | tuple) or not all(isinstance(t, str) for t in tokens):
        errors.append(
            Error(
                "AIGC['API']['TOKENS'] must be a list of strings.",
                hint="Each string is a secret that server-to-server callers send.",
                id="aigc_django.E013",
            )
        )
    elif any(len(t) < 32 for t in tokens):
        errors.append(
            Warning(
                "AIGC['API']['TOKENS'] has a secret shorter than 32 characters.",
                hint="Make one with: python -c 'import secrets; print(secrets.token_urlsafe())'",
                id="aigc_django.W004",
            )
        )
    return errors


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


@register("aigc_django")
def check_profiles(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    if aigc_settings.unknown_keys() or not isinstance(aigc_settings.PROFILES, dict):
        return []  # reported by check_settings
    options = aigc_settings.PROFILES
    problems = []
    for name in ("HALF_LIFE_DAYS", "MATCH_DISTANCE"):
        if not _number(options[name]) or options[name] <= 0:
            problems.append((name, "must be a number above 0"))
    for name in ("ALS_REGULARIZATION", "ALS_ALPHA"):
        if not _number(options[name]) or options[name] < 0:
            problems.append((name, "must be a number of at least 0"))
    for name, low in (
        ("MIN_EVENTS", 1),
        ("K_MIN", 2),
        ("K_MAX", 2),
        ("FACTORS", 1),
        ("ALS_ITERATIONS", 1),
        ("TOP_ITEMS", 1),
        ("LOOKUP_TIMEOUT", 1),
        ("SEED", 0),
    ):
        value = options[name]
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            problems.append((name, f"must be a whole number of at least {low}"))
    k_min, k_max = options["K_MIN"], options["K_MAX"]
    if isinstance(k_min, int) and isinstance(k_max, int) and k_max < k_min:
        problems.append(("K_MAX", "must be at least K_MIN"))
    segments = options["SEGMENTS"]
    if segments is not None and (
        isinstance(segments, bool) or not isinstance(segments, int) or segments < 2
    ):
        problems.append(("SEGMENTS", "must be None (choose automatically) or at least 2"))
    weights = options["KIND_WEIGHTS"]
    if not isinstance(weights, dict) or not all(_number(w) for w in weights.values()):
        problems.append(("KIND_WEIGHTS", "must be a dict of event kind -> number"))
    device = options["DEVICE"]
    if not isinstance(device, str) or not re.match(r"^(auto|cpu|cuda(:\d+)?|mps)$", device):
        problems.append(("DEVICE", 'must be "auto", "cpu", "cuda", "cuda:N" or "mps"'))
    errors: list[CheckMessage] = [
        Error(
            f"AIGC['PROFILES']['{name}'] is {options[name]!r}: it {message}.",
            hint="See docs/settings.md#profiles.",
            id="aigc_django.E014",
        )
        for name, message in problems
    ]
    model_dir = aigc_settings.MODEL_DIR
    if model_dir is not None and not isinstance(model_dir, str | PurePath):
        errors.append(
            Error(
                f"AIGC['MODEL_DIR'] is {model_dir!r}.",
                hint="Give a directory path, or None for BASE_DIR/aigc-models.",
                id="aigc_django.E015",
            )
        )
    elif model_dir is not None:
        for public in ("MEDIA_ROOT", "STATIC_ROOT"):
            root = getattr(settings, public, None)
            if root and Path(model_dir).resolve().is_relative_to(Path(root).resolve()):
                errors.append(
                    Warning(
                        f"AIGC['MODEL_DIR'] is inside {public}: web servers may publish the "
                        "models trained on your shop's data.",
                        hint="Keep models outside every public directory.",
                        id="aigc_django.W005",
                    )
                )
    return errors


@register("aigc_django")
def check_middleware(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    if MIDDLEWARE_PATH in getattr(settings, "MIDDLEWARE", []):
        return []
    return [
        Warning(
            "VisitorMiddleware is not in MIDDLEWARE: visitors get no cookie and track() "
            "records nothing for new visitors.",
            hint=f"Add {MIDDLEWARE_PATH!r} to MIDDLEWARE, after SessionMiddleware.",
            id="aigc_django.W001",
        )
    ]


COLOR = re.compile(r"^#[0-9a-fA-F]{6}$")
IMAGE_FORMATS = {"WEBP", "JPEG", "PNG", "AVIF"}


@register("aigc_django")
def check_generation(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    if aigc_settings.unknown_keys() or not all(
        isinstance(getattr(aigc_settings, name), dict)
        for name in ("BRAND", "GENERATION", "COPY_BACKENDS", "IMAGE_BACKENDS")
    ):
        return []  # reported by check_settings
    from aigc_django.generation.backends import backend_problems

    errors: list[CheckMessage] = [
        Error(
            message if message.startswith("AIGC") else f"AIGC {option} {message}.",
            hint="Each alias is {'BACKEND': 'dotted.path.Class', 'OPTIONS': {...}}; "
            "see docs/backends.md.",
            id="aigc_django.E016",
        )
        for option, message in backend_problems()
    ]
    brand = aigc_settings.BRAND
    problems = []
    colors = brand["COLORS"]
    if not isinstance(colors, list | tuple) or not all(
        isinstance(c, str) and COLOR.match(c) for c in colors
    ):
        problems.append(("COLORS", 'must be a list of "#rrggbb" colours'))
    for name in ("BANNED_WORDS", "BANNED_PATTERNS"):
        if not isinstance(brand[name], list | tuple) or not all(
            isinstance(v, str) for v in brand[name]
        ):
            problems.append((name, "must be a list of strings"))
    for pattern in brand["BANNED_PATTERNS"] if isinstance(brand["BANNED_PATTERNS"], list) else []:
        try:
            re.compile(str(pattern))
        except re.error as exc:
            problems.append(("BANNED_PATTERNS", f"has the invalid pattern {pattern!r}: {exc}"))
    for name in ("NAME", "VOICE"):
        if not isinstance(brand[name], str):
            problems.append((name, "must be a string"))
    errors += [
        Error(
            f"AIGC['BRAND']['{name}'] is {brand[name]!r}: it {message}.",
            hint="See docs/settings.md#brand.",
            id="aigc_django.E017",
        )
        for name, message in problems
    ]
    for name in ("LOGO", "FONT", "BOLD_FONT"):
        path = brand[name]
        if path is not None and not (isinstance(path, str | PurePath) and Path(path).is_file()):
            errors.append(
                Warning(
                    f"AIGC['BRAND']['{name}'] is {path!r}, which is not a readable file: "
                    "banners are made without it.",
                    hint="Give the path of an existing file, or None.",
                    id="aigc_django.W006",
                )
            )
    options = aigc_settings.GENERATION
    problems = []
    for name in ("BATCH_SIZE", "CANDIDATES", "SOFT_TIME_LIMIT", "TIME_LIMIT", "QUALITY"):
        value = options[name]
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            problems.append((name, "must be a whole number of at least 1"))
    for name in ("MAX_RETRIES", "RETRY_BACKOFF"):
        value = options[name]
        if isinstance(value, bool) or not _number(value) or value < 0:
            problems.append((name, "must be a number of at least 0"))
    limits = (options["SOFT_TIME_LIMIT"], options["TIME_LIMIT"])
    if all(isinstance(v, int) for v in limits) and limits[1] <= limits[0]:
        problems.append(("TIME_LIMIT", "must be above SOFT_TIME_LIMIT"))
    if not isinstance(options["QUEUE"], str) or not options["QUEUE"]:
        problems.append(("QUEUE", "must be a queue name"))
    if options["IMAGE_FORMAT"] not in IMAGE_FORMATS:
        problems.append(("IMAGE_FORMAT", f"must be one of {sorted(IMAGE_FORMATS)}"))
    if options["FALLBACK_FORMAT"] not in {"JPEG", "PNG"}:
        problems.append(("FALLBACK_FORMAT", 'must be "JPEG" or "PNG"'))
    widths = options["RENDITION_WIDTHS"]
    if not isinstance(widths, list | tuple) or not all(
        isinstance(w, int) and not isinstance(w, bool) and w > 0 for w in widths
    ):
        problems.append(("RENDITION_WIDTHS", "must be a list of widths in pixels"))
    sizes = options["DEFAULT_SIZES"]
    if not isinstance(sizes, list | tuple) or not sizes or not all(valid_size(s) for s in sizes):
        problems.append(("DEFAULT_SIZES", "must be a list of [width, height] pairs"))
    errors += [
        Error(
            f"AIGC['GENERATION']['{name}'] is {options[name]!r}: it {message}.",
            hint="See docs/settings.md#generation.",
            id="aigc_django.E018",
        )
        for name, message in problems
    ]
    return errors


def valid_size(size: Any) -> bool:
    """A [width, height] pair of whole numbers within 16..8192 pixels."""
    return (
        isinstance(size, list | tuple)
        and len(size) == 2
        and all(isinstance(v, int) and not isinstance(v, bool) and 16 <= v <= 8192 for v in size)
    )


@register("aigc_django")
def check_moderation(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """``MODERATION["AUTO_APPROVE"]``: None, "safe", a callable or a dotted path to one."""
    if aigc_settings.unknown_keys() or not isinstance(aigc_settings.MODERATION, dict):
        return []  # reported by check_settings
    from django.utils.module_loading import import_string

    policy = aigc_settings.MODERATION["AUTO_APPROVE"]
    if policy is None or policy == "safe" or callable(policy):
        return []
    problem = "is neither None, 'safe' nor a dotted path"
    if isinstance(policy, str):
        try:
            target = import_string(policy)
        except ImportError as exc:
            problem = f"cannot be imported: {exc}"
        else:
            if callable(target):
                return []
            problem = "does not name a callable"
    return [
        Error(
            f"AIGC['MODERATION']['AUTO_APPROVE'] is {policy!r}: it {problem}.",
            hint="Use None (every variant waits for an editor), 'safe' (approve variants "
            "without safety flags) or a dotted path to a function f(variant) -> bool.",
            id="aigc_django.E019",
        )
    ]


@register("aigc_django")
def check_delivery(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """``AIGC["DELIVERY"]``: times, the client-mode switch and the preview parameter."""
    if aigc_settings.unknown_keys() or not isinstance(aigc_settings.DELIVERY, dict):
        return []  # reported by check_settings
    options = aigc_settings.DELIVERY
    problems = []
    for name in ("STICKY_SECONDS", "CACHE_TIMEOUT", "CONVERSION_WINDOW_HOURS"):
        value = options[name]
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            problems.append((name, "must be a whole number of at least 1"))
    batch = options["IMPRESSION_BATCH_SECONDS"]
    if not _number(batch) or batch < 0:
        problems.append(("IMPRESSION_BATCH_SECONDS", "must be a number of at least 0"))
    if not isinstance(options["CLIENT_MODE"], bool):
        problems.append(("CLIENT_MODE", "must be True or False"))
    parameter = options["PREVIEW_PARAMETER"]
    if not isinstance(parameter, str) or not re.fullmatch(r"[A-Za-z0-9_\-]+", parameter):
        problems.append(
            ("PREVIEW_PARAMETER", "must be a query parameter name (letters, digits, _ -)")
        )
    return [
        Error(
            f"AIGC['DELIVERY']['{name}'] is {options[name]!r}: it {message}.",
            hint="See docs/delivery.md#settings.",
            id="aigc_django.E030",
        )
        for name, message in problems
    ]


@register("aigc_django")
def check_layout(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """``AIGC["LAYOUT"]``: the layout model's switch and its training sizes."""
    if aigc_settings.unknown_keys() or not isinstance(aigc_settings.LAYOUT, dict):
        return []  # reported by check_settings
    options = aigc_settings.LAYOUT
    problems = []
    if not isinstance(options["ENABLED"], bool):
        problems.append(("ENABLED", "must be True or False"))
    for name, least in (("CANDIDATES", 1), ("MIN_LAYOUTS", 1), ("EPOCHS", 1), ("SYNTHETIC", 0)):
        value = options[name]
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            problems.append((name, f"must be a whole number of at least {least}"))
    return [
        Error(
            f"AIGC['LAYOUT']['{name}'] is {options[name]!r}: it {message}.",
            hint="See docs/settings.md#layout.",
            id="aigc_django.E020",
        )
        for name, message in problems
    ]
