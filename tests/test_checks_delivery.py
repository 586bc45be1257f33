"""aigc_django.E030: the AIGC["DELIVERY"] options."""

from __future__ import annotations

import pytest
from django.test import override_settings

from aigc_django.checks import check_delivery
from tests import settings as test_settings

BASE = test_settings.AIGC


def messages(**delivery) -> list:
    with override_settings(AIGC={**BASE, "DELIVERY": {**BASE.get("DELIVERY", {}), **delivery}}):
        return check_delivery()


def test_the_defaults_and_the_test_settings_are_clean():
    assert messages() == []
    with override_settings(AIGC={k: v for k, v in BASE.items() if k != "DELIVERY"}):
        assert check_delivery() == []


@pytest.mark.parametrize(
    "name, value",
    [
        ("STICKY_SECONDS", 0),
        ("STICKY_SECONDS", "1800"),
        ("STICKY_SECONDS", True),
        ("CACHE_TIMEOUT", -5),
        ("CACHE_TIMEOUT", 1.5),
        ("CONVERSION_WINDOW_HOURS", None),
        ("IMPRESSION_BATCH_SECONDS", -1),
        ("IMPRESSION_BATCH_SECONDS", "1"),
        ("CLIENT_MODE", "yes"),
        ("PREVIEW_PARAMETER", ""),
        ("PREVIEW_PARAMETER", "a b"),
        ("PREVIEW_PARAMETER", 3),
    ],
)
def test_e030_names_the_option_and_its_value(name, value):
    (message,) = messages(**{name: value})
    assert message.id == "aigc_django.E030"
    assert f"AIGC['DELIVERY']['{name}'] is {value!r}" in message.msg
    assert "docs/delivery.md#settings" in message.hint


@pytest.mark.parametrize(
    "options",
    [
        {"STICKY_SECONDS": 1, "CACHE_TIMEOUT": 86400, "CONVERSION_WINDOW_HOURS": 168},
        {"IMPRESSION_BATCH_SECONDS": 0},
        {"IMPRESSION_BATCH_SECONDS": 2.5, "CLIENT_MODE": True, "PREVIEW_PARAMETER": "preview-v"},
    ],
)
def test_good_values_pass(options):
    assert messages(**options) == []


def test_several_mistakes_give_one_error_each():
    found = messages(STICKY_SECONDS=0, CLIENT_MODE=1)
    assert [m.id for m in found] == ["aigc_django.E030", "aigc_django.E030"]
