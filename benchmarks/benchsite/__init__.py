"""A minimal, catalog-free Django site that the benchmarks run against.

Named ``benchsite`` rather than ``site``: ``site`` would shadow the standard library module
and is ignored by the repository's ``.gitignore``.
"""

from benchmarks.benchsite.celery_app import app as celery_app

__all__ = ["celery_app"]
