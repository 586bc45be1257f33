"""The benchmark site for profile rebuilds: the same PostgreSQL site, with the app's
default ``PROFILES`` and the trained models written to a temporary folder
(``AIGC_BENCH_MODEL_DIR``, else a fresh ``tempfile.mkdtemp()``) instead of ``./aigc-models``.
"""

import os
import tempfile

from benchmarks.benchsite.settings import *  # noqa: F403
from benchmarks.benchsite.settings import AIGC

AIGC = {
    **AIGC,
    "MODEL_DIR": os.environ.get("AIGC_BENCH_MODEL_DIR") or tempfile.mkdtemp(prefix="aigc-bench-"),
}
