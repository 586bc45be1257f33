"""Every system check id, under override_settings."""

from __future__ import annotations

import pytest
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.test import override_settings

from aigc_django.checks import (
    check_generation,
    check_middleware,
    check_profiles,
    check_settings,
)
from tests import settings as test_settings

BASE = test_settings.AIGC


def ids(**aigc) -> list[str]:
    with override_settings(AIGC={**BASE, **aigc}):
        return [m.id for m in check_settings()]


def test_the_test_settings_are_clean():
    assert ids() == []
    assert check_middleware() == []
    assert check_profiles() == []
    assert check_generation() == []


def test_e001_not_a_dict():
    with override_settings(AIGC=["CATALOG"]):
        assert [m.id for m in check_settings()] == ["aigc_django.E001"]
    assert ids(INGEST="buffered") == ["aigc_django.E001"]


def test_e002_unknown_keys_top_level_and_nested():
    with override_settings(AIGC={**BASE, "CATALOUGE": {}, "INGEST": {"MOD": "direct"}}):
        messages = check_settings()
    assert [m.id for m in messages] == ["aigc_django.E002", "aigc_django.E002"]
    assert "'CATALOUGE'" in messages[0].msg and "'INGEST.MOD'" in messages[1].msg
    assert "CATALOG" in messages[0].hint


@pytest.mark.parametrize(
    ("catalog", "names"),
    [
        ({"MODEL": "shopapp.Nope", "FIELDS": {}}, "CATALOG.MODEL"),
        ({"MODEL": "Product", "FIELDS": {}}, "CATALOG.MODEL"),
        (
            {"MODEL": "shopapp.Product", "FIELDS": {"key": "sku", "title": "name"}},
            "FIELDS.category",
        ),
        (
            {
                "MODEL": "shopapp.Product",
                "FIELDS": {"key": "sku", "title": "nmae", "category": "category__slug"},
            },
            "FIELDS.title 'nmae'",
        ),
        (
            {
                "MODEL": "shopapp.Product",
                "FIELDS": {"key": "sku", "title": "name", "category": "category__colour"},
            },
            "shopapp.Category has no field or attribute 'colour'",
        ),
        (
            {
                "MODEL": "shopapp.Product",
                "FIELDS": {"key": "sku", "title": "name", "category": "category", "colour": "x"},
            },
            "FIELDS.colour is not a catalog field",
        ),
        (
            {
                "MODEL": "shopapp.Product",
                "QUERYSET": "tests.nowhere.products",
                "FIELDS": {"key": "sku", "title": "name", "category": "category"},
            },
            "CATALOG.QUERYSET",
        ),
        ("shopapp.Product", "must be a dict"),
    ],
)
def test_e003_bad_catalog_mapping_names_the_field(catalog, names):
    with override_settings(AIGC={**BASE, "CATALOG": catalog}):
        messages = check_settings()
    assert [m.id for m in messages] == ["aigc_django.E003"]
    assert names in messages[0].msg


def test_w003_no_catalog():
    assert ids(CATALOG=None) == ["aigc_django.W003"]


def test_e004_consent_mode():
    assert ids(CONSENT={"MODE": "opt-in"}) == ["aigc_django.E004"]


def test_e005_consent_check_not_importable():
    assert ids(CONSENT={"CHECK": "tests.nowhere.check"}) == ["aigc_django.E005"]
    assert ids(CONSENT={"CHECK": "tests.settings.SECRET_KEY"}) == ["aigc_django.E005"]


def test_e006_ingest_mode():
    assert ids(INGEST={"MODE": "async"}) == ["aigc_django.E006"]


def test_e007_buffer_url():
    assert ids(INGEST={"BUFFER": "memcached://x"}) == ["aigc_django.E007"]


def test_w002_memory_buffer_in_production(settings):
    settings.DEBUG = False
    assert ids(INGEST={"MODE": "buffered"}) == ["aigc_django.W002"]
    assert ids(INGEST={"MODE": "buffered", "BUFFER": "redis://127.0.0.1:6379/0"}) == []
    settings.DEBUG = True
    assert ids(INGEST={"MODE": "buffered"}) == []


@pytest.mark.parametrize(
    "aigc",
    [
        {"INGEST": {"BATCH_SIZE": 0}},
        {"INGEST": {"FLUSH_INTERVAL": "5"}},
        {"API": {"MAX_REQUEST_BYTES": -1}},
        {"API": {"MAX_EVENTS_PER_BATCH": True}},
        {"RETENTION_DAYS": 0},
        {"VISITOR_COOKIE": {"AGE": 1.5}},
    ],
)
def test_e008_limits_must_be_positive_integers(aigc):
    assert ids(**aigc) == ["aigc_django.E008"]


@pytest.mark.parametrize("kind", ["Wishlist", "purchase", "with space", "x" * 41, 7])
def test_e009_custom_kinds(kind):
    assert ids(CUSTOM_EVENT_KINDS=[kind]) == ["aigc_django.E009"]


def test_e009_custom_kinds_must_be_a_list():
    assert ids(CUSTOM_EVENT_KINDS="wishlist") == ["aigc_django.E009"]


def test_e011_bot_patterns_must_be_a_list():
    assert ids(BOT_USER_AGENTS="bot") == ["aigc_django.E011"]


def test_e005_consent_check_of_the_wrong_type():
    assert ids(CONSENT={"CHECK": 5}) == ["aigc_django.E005"]


def test_e010_rate():
    assert ids(API={"INGEST_RATE": "lots"}) == ["aigc_django.E010"]
    assert ids(API={"INGEST_RATE": None}) == []


def test_e011_bot_pattern():
    assert ids(BOT_USER_AGENTS=["bot(", "crawl"]) == ["aigc_django.E011"]


def test_e012_samesite():
    assert ids(VISITOR_COOKIE={"SAMESITE": "lax-ish"}) == ["aigc_django.E012"]
    assert ids(VISITOR_COOKIE={"SAMESITE": "None"}) == ["aigc_django.E012"]
    assert ids(VISITOR_COOKIE={"SAMESITE": "None", "SECURE": True}) == []


def test_e013_tokens_and_w004_short_tokens():
    assert ids(API={"TOKENS": "secret"}) == ["aigc_django.E013"]
    assert ids(API={"TOKENS": ["short"]}) == ["aigc_django.W004"]


@pytest.mark.parametrize(
    ("profiles", "name"),
    [
        ({"HALF_LIFE_DAYS": 0}, "HALF_LIFE_DAYS"),
        ({"K_MIN": 1}, "K_MIN"),
        ({"K_MIN": 5, "K_MAX": 3}, "K_MAX"),
        ({"SEGMENTS": 1}, "SEGMENTS"),
        ({"KIND_WEIGHTS": {"purchase": "lots"}}, "KIND_WEIGHTS"),
        ({"DEVICE": "gpu"}, "DEVICE"),
        ({"ALS_ALPHA": -1}, "ALS_ALPHA"),
        ({"MIN_EVENTS": 0}, "MIN_EVENTS"),
    ],
)
def test_e014_profile_options(profiles, name):
    with override_settings(AIGC={**BASE, "PROFILES": profiles}):
        messages = check_profiles()
    assert [m.id for m in messages] == ["aigc_django.E014"]
    assert f"['{name}']" in messages[0].msg


def test_e015_and_w005_model_dir(settings, tmp_path):
    with override_settings(AIGC={**BASE, "MODEL_DIR": 5}):
        assert [m.id for m in check_profiles()] == ["aigc_django.E015"]
    settings.MEDIA_ROOT = str(tmp_path / "media")
    with override_settings(AIGC={**BASE, "MODEL_DIR": str(tmp_path / "media" / "models")}):
        assert [m.id for m in check_profiles()] == ["aigc_django.W005"]
    with override_settings(AIGC={**BASE, "MODEL_DIR": str(tmp_path / "models")}):
        assert check_profiles() == []


def test_w001_middleware_missing(settings):
    settings.MIDDLEWARE = [m for m in settings.MIDDLEWARE if "aigc" not in m]
    assert [m.id for m in check_middleware()] == ["aigc_django.W001"]


def test_errors_stop_manage_py_check():
    with override_settings(AIGC={**BASE, "CONSENT": {"MODE": "nope"}}):
        with pytest.raises(SystemCheckError, match=r"aigc_django\.E004"):
            call_command("check")


DUMMY_COPY = "aigc_django.generation.backends.dummy.DummyCopyBackend"


def generation_ids(**aigc) -> list[str]:
    with override_settings(AIGC={**BASE, **aigc}):
        return [m.id for m in check_generation()]


@pytest.mark.parametrize(
    "backends",
    [
        {"default": {"BACKEND": "no.such.Backend"}},
        {"default": {"BACKEND": "aigc_django.generation.backends.dummy.DummyImageBackend"}},
        {"default": {"BACKEND": DUMMY_COPY, "OPTION": {}}},
        {"default": {"BACKEND": DUMMY_COPY, "OPTIONS": []}},
        {"default": "dummy"},
        {"fast": {"BACKEND": DUMMY_COPY}},
    ],
)
def test_e016_copy_backends(backends):
    with override_settings(AIGC={**BASE, "COPY_BACKENDS": backends}):
        messages = check_generation()
    assert [m.id for m in messages] == ["aigc_django.E016"]
    assert "COPY_BACKENDS" in messages[0].msg


def test_e016_names_the_alias_and_extra_aliases_are_fine():
    assert (
        generation_ids(
            COPY_BACKENDS={"default": {"BACKEND": DUMMY_COPY}, "fast": {"BACKEND": DUMMY_COPY}}
        )
        == []
    )
    with override_settings(AIGC={**BASE, "IMAGE_BACKENDS": {"default": {"BACKEND": DUMMY_COPY}}}):
        (message,) = check_generation()
    assert message.id == "aigc_django.E016" and "['default']" in message.msg


@pytest.mark.parametrize(
    ("brand", "name"),
    [
        ({"COLORS": ["red"]}, "COLORS"),
        ({"COLORS": "#ffffff"}, "COLORS"),
        ({"BANNED_WORDS": "cheap"}, "BANNED_WORDS"),
        ({"BANNED_PATTERNS": ["(unclosed"]}, "BANNED_PATTERNS"),
        ({"VOICE": 5}, "VOICE"),
    ],
)
def test_e017_brand(brand, name):
    with override_settings(AIGC={**BASE, "BRAND": brand}):
        messages = check_generation()
    assert [m.id for m in messages] == ["aigc_django.E017"]
    assert f"['{name}']" in messages[0].msg


@pytest.mark.parametrize(
    ("generation", "name"),
    [
        ({"BATCH_SIZE": 0}, "BATCH_SIZE"),
        ({"CANDIDATES": "4"}, "CANDIDATES"),
        ({"MAX_RETRIES": -1}, "MAX_RETRIES"),
        ({"SOFT_TIME_LIMIT": 60, "TIME_LIMIT": 30}, "TIME_LIMIT"),
        ({"QUEUE": ""}, "QUEUE"),
        ({"IMAGE_FORMAT": "GIF"}, "IMAGE_FORMAT"),
        ({"FALLBACK_FORMAT": "WEBP"}, "FALLBACK_FORMAT"),
        ({"RENDITION_WIDTHS": [480, "960"]}, "RENDITION_WIDTHS"),
        ({"DEFAULT_SIZES": [[1200]]}, "DEFAULT_SIZES"),
        ({"DEFAULT_SIZES": [[0, 600]]}, "DEFAULT_SIZES"),
    ],
)
def test_e018_generation(generation, name):
    with override_settings(AIGC={**BASE, "GENERATION": generation}):
        messages = check_generation()
    assert [m.id for m in messages] == ["aigc_django.E018"]
    assert f"['{name}']" in messages[0].msg


def test_w006_missing_brand_files(tmp_path):
    logo = tmp_path / "logo.png"
    logo.write_bytes(b"not really")
    assert generation_ids(BRAND={"LOGO": str(logo)}) == []
    assert generation_ids(BRAND={"LOGO": str(tmp_path / "missing.png")}) == ["aigc_django.W006"]
    assert generation_ids(BRAND={"FONT": "/no/such/font.ttf"}) == ["aigc_django.W006"]
