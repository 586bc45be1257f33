"""The Oscar tests run only under tests.settings_oscar, in their own pytest process:
``pytest --ds=tests.settings_oscar tests/oscar`` (scripts/test does it after the main suite).

pytest-django configures Django once per process, and the main suite's settings have no
Oscar, so under any other settings module the files here are not collected at all.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from django.conf import settings

OSCAR_SETTINGS = "tests.settings_oscar"


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    if settings.SETTINGS_MODULE != OSCAR_SETTINGS:
        return True
    return None
