"""docs/openapi.yaml is the schema drf-spectacular generates from the API as it is now."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCHEMA = ROOT / "docs" / "openapi.yaml"

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("drf_spectacular") is None,
    reason="drf-spectacular is not installed (pip install -e '.[docs]')",
)


def test_openapi_schema_is_current(tmp_path: Path) -> None:
    out = tmp_path / "openapi.yaml"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "django",
            "spectacular",
            "--settings",
            "tests.settings_openapi",
            "--validate",
            "--fail-on-warn",
            "--file",
            str(out),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert out.read_text() == SCHEMA.read_text(), (
        "docs/openapi.yaml is out of date: run scripts/openapi and commit the result"
    )


def test_schema_lists_every_drf_endpoint() -> None:
    text = SCHEMA.read_text()
    for path in ("/aigc/api/events/", "/aigc/api/me/", "/aigc/api/feedback/"):
        assert f"  {path}:" in text
