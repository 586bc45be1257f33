"""The AIGC settings object."""

from __future__ import annotations

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings

from aigc_django.conf import DEFAULTS, aigc_settings


def test_defaults_apply_when_not_set():
    with override_settings(AIGC={}):
        assert DEFAULTS["RETENTION_DAYS"] == aigc_settings.RETENTION_DAYS
        assert aigc_settings.CONSENT["MODE"] == "implied"


def test_nested_dicts_merge_over_defaults():
    with override_settings(AIGC={"INGEST": {"MODE": "buffered"}}):
        assert aigc_settings.INGEST["MODE"] == "buffered"
        assert aigc_settings.INGEST["BATCH_SIZE"] == DEFAULTS["INGEST"]["BATCH_SIZE"]
    # override_settings reloads: the old value is gone.
    assert aigc_settings.INGEST["MODE"] == "direct"


def test_unknown_keys_raise_a_clear_error():
    with override_settings(AIGC={"RETENTION_DYAS": 3}):
        with pytest.raises(ImproperlyConfigured, match="RETENTION_DYAS"):
            aigc_settings.RETENTION_DAYS  # noqa: B018


def test_unknown_option_name_is_an_attribute_error():
    with pytest.raises(AttributeError):
        aigc_settings.NOPE  # noqa: B018


def test_dotted_paths_are_imported():
    with override_settings(AIGC={"CONSENT": {"CHECK": "tests.test_tracking.consent_from_header"}}):
        from tests.test_tracking import consent_from_header

        assert aigc_settings.imported("CONSENT", "CHECK") is consent_from_header
    with override_settings(AIGC={"CONSENT": {"CHECK": "tests.nowhere.f"}}):
        with pytest.raises(ImproperlyConfigured, match=r"\['CONSENT'\]\['CHECK'\]"):
            aigc_settings.imported("CONSENT", "CHECK")
