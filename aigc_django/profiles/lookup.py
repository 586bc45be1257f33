"""The visitor -> segment lookup that delivery uses on every request, cached.

A cached answer is keyed by a version number that every rebuild bumps, so a rebuild
changes every visitor's answer at once without deleting keys one by one.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.core.cache import cache
from django.dispatch import Signal

from aigc_django.conf import aigc_settings
from aigc_django.models import Profile

VERSION_KEY = "aigc:segments:version"
EVERYONE = "everyone"

# Sent by forget() with ``visitor_ids``: the segments of these visitors may have changed.
segments_forgotten = Signal()


def _version() -> int:
    version = cache.get(VERSION_KEY)
    if version is None:
        cache.add(VERSION_KEY, 1, timeout=None)
        version = cache.get(VERSION_KEY, 1)
    return int(version)


def _key(version: int, visitor_id: Any) -> str:
    return f"aigc:segment:{version}:{visitor_id}"


def segment_key_for(visitor_id: Any) -> str:
    """The key of the visitor's segment ("everyone" for unknown visitors and None)."""
    if visitor_id is None:
        return EVERYONE
    key = _key(_version(), visitor_id)
    found = cache.get(key)
    if found is None:
        found = segment_from_database(visitor_id)
        cache.set(key, found, aigc_settings.PROFILES["LOOKUP_TIMEOUT"])
    return found


def segment_from_database(visitor_id: Any) -> str:
    """The key of the visitor's active segment read from the database, uncached."""
    found = (
        Profile.objects.filter(visitor_id=visitor_id, segment__active=True)
        .values_list("segment__key", flat=True)
        .first()
    )
    return found or EVERYONE


def bump_version() -> None:
    """Invalidate every cached answer (after a rebuild)."""
    try:
        cache.incr(VERSION_KEY)
    except ValueError:
        cache.set(VERSION_KEY, 2, timeout=None)


def forget(visitor_ids: Iterable[Any]) -> None:
    """Invalidate the cached answers of some visitors (after an incremental update or an
    erasure), then send :data:`segments_forgotten` so that whoever keeps a copy of their
    segments drops it too (delivery keeps one beside each visitor's sticky picks)."""
    visitor_ids = list(visitor_ids)
    version = _version()
    cache.delete_many([_key(version, v) for v in visitor_ids])
    segments_forgotten.send(sender=Profile, visitor_ids=visitor_ids)
