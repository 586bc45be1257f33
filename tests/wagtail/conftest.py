"""The Wagtail tests run only under tests.settings_wagtail (their own pytest process):
under any other settings, Wagtail and the test page app are not installed, so the tests in
this folder are not collected."""

from __future__ import annotations

from pathlib import Path

from django.conf import settings

HERE = Path(__file__).resolve().parent


def wagtail_installed() -> bool:
    return "wagtail" in settings.INSTALLED_APPS


def pytest_ignore_collect(collection_path: Path) -> bool | None:
    if collection_path.resolve().is_relative_to(HERE) and not wagtail_installed():
        return True
    return None
