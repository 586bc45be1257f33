"""A visitor's data: export, erasure, and the retention purge."""

from __future__ import annotations

import logging
import uuid
from datetime import datetime, timedelta
from typing import Any

from django.db import transaction
from django.utils import timezone

from aigc_django.conf import aigc_settings
from aigc_django.models import Event, IngestBatch, Profile, Visitor
from aigc_django.profiles import lookup
from aigc_django.tracking import ingest
from aigc_django.tracking.events import time_text
from aigc_django.tracking.visitors import lock_visitors

logger = logging.getLogger("aigc_django.tracking")


def _visitor_ids(visitor_id: uuid.UUID | str) -> list[uuid.UUID]:
    """The visitor and every anonymous visitor that was merged into it."""
    root = uuid.UUID(str(visitor_id))
    ids = [root]
    ids += Visitor.objects.filter(merged_into_id=root).values_list("id", flat=True)
    return ids


def _flush_quietly() -> None:
    # Buffered events of this visitor must be in the database before export or erasure.
    if aigc_settings.INGEST["MODE"] == "buffered":
        try:
            ingest.flush_buffer()
        except Exception as exc:
            logger.warning("Could not flush buffered events first: %s", exc)


def export_visitor(visitor_id: uuid.UUID | str) -> dict[str, Any] | None:
    """Everything stored about one visitor, as JSON-ready data; None if unknown."""
    _flush_quietly()
    visitor = Visitor.objects.filter(id=visitor_id).first()
    if visitor is None:
        return None
    ids = _visitor_ids(visitor.id)
    events = Event.objects.filter(visitor_id__in=ids).order_by("occurred_at", "id")
    profiles = {
        profile.visitor_id: _profile_data(profile)
        for profile in Profile.objects.filter(visitor_id__in=ids).select_related("segment")
    }
    return {
        "visitor": {
            "id": str(visitor.id),
            "user": visitor.user_id,
            "first_seen": visitor.first_seen.isoformat(),
            "last_seen": visitor.last_seen.isoformat(),
            "merged_visitors": [str(i) for i in ids[1:]],
        },
        "profile": profiles.get(visitor.id),
        # A merged visitor keeps the profile built before it logged in, until the rebuild.
        "merged_profiles": [{"visitor": str(i), **profiles[i]} for i in ids[1:] if i in profiles],
        "events": [
            {
                "kind": e.kind,
                "item": e.item_key,
                "category": e.category_key,
                "value": e.value,
                "properties": e.properties,
                "occurred_at": e.occurred_at.isoformat(),
            }
            for e in events.iterator(chunk_size=2000)
        ],
    }


def _profile_data(profile: Profile) -> dict[str, Any]:
    return {
        "interests": profile.interests,
        "embedding": profile.embedding,
        "top_items": profile.top_items,
        "recency_days": profile.recency_days,
        "frequency": profile.frequency,
        "monetary": profile.monetary,
        "cart_open": profile.cart_open,
        "last_cart_at": profile.last_cart_at.isoformat() if profile.last_cart_at else None,
        "device": profile.device,
        "referrer": profile.referrer,
        "segment": profile.segment.key if profile.segment_id else None,
        "built_at": profile.built_at.isoformat(),
    }


def _lock_visitor_and_merged(visitor_id: uuid.UUID | str) -> list[uuid.UUID]:
    """Lock the visitor and the visitors merged into it, in id order; return their ids.

    A writer holding one of them (it upserts the visitor of every event it writes) commits
    before their events are deleted, and a later writer waits until they are gone. Events
    carry no database foreign key, so these locks are what keep an erased visitor's events
    from surviving a concurrent write.
    """
    ids = sorted(_visitor_ids(visitor_id))
    while True:
        savepoint = transaction.savepoint()
        lock_visitors(ids)
        # A merge into the visitor needs its lock, so once it is held this read is final.
        found = set(_visitor_ids(visitor_id))
        if found <= set(ids):
            transaction.savepoint_commit(savepoint)
            return ids
        # A merge landed between the first read and the lock: let go and lock them all in
        # id order (as writers do), so that no writer can be waiting for us while we wait.
        transaction.savepoint_rollback(savepoint)
        ids = sorted(found | set(ids))


def erase_visitor(visitor_id: uuid.UUID | str) -> dict[str, int]:
    """Delete one visitor, the visitors merged into it, their events and profiles."""
    _flush_quietly()
    with transaction.atomic():
        ids = _lock_visitor_and_merged(visitor_id)
        events = Event.objects.filter(visitor_id__in=ids).delete()[0]
        visitors = Visitor.objects.filter(id__in=ids).count()
        Visitor.objects.filter(id__in=ids).delete()
    names = {str(i) for i in ids}
    events += _drop_set_aside(lambda event: event.get("visitor") in names)
    lookup.forget(ids)
    _forget_last_clicks(ids)
    return {"visitors": visitors, "events": events}


def _forget_last_clicks(ids: list[uuid.UUID]) -> None:
    """Drop the visitors' last clicks, kept in the cache for conversion attribution."""
    from aigc_django.delivery.clicks import forget_clicks

    try:
        forget_clicks(ids)
    except Exception as exc:
        logger.warning("Could not drop the erased visitors' last clicks: %s", exc)


def _drop_set_aside(matches) -> int:
    """Remove matching events from the buffer's set-aside (dead-letter) events."""
    if aigc_settings.INGEST["MODE"] != "buffered":
        return 0
    try:
        return ingest.get_buffer().drop_set_aside(matches)
    except Exception as exc:
        logger.warning("Could not clean set-aside events: %s", exc)
        return 0


def purge(now: datetime | None = None, days: int | None = None, chunk: int = 10_000) -> dict:
    """Delete events older than the retention window, then visitors left with nothing.

    Deletes in chunks so that a large purge does not hold one long transaction.
    """
    now = now or timezone.now()
    days = aigc_settings.RETENTION_DAYS if days is None else days
    cutoff = now - timedelta(days=days)
    events = 0
    while True:
        ids = list(
            Event.objects.filter(occurred_at__lt=cutoff).values_list("id", flat=True)[:chunk]
        )
        if not ids:
            break
        events += Event.objects.filter(id__in=ids).delete()[0]
    stamp = time_text(cutoff)  # clean events' times compare as text
    events += _drop_set_aside(lambda event: str(event.get("occurred_at", "")) < stamp)
    stale = Visitor.objects.filter(last_seen__lt=cutoff, user__isnull=True, events__isnull=True)
    visitors = stale.count()
    stale.delete()
    # A marker must outlive any batch that could still be retried: keep it as long as events.
    IngestBatch.objects.filter(written_at__lt=cutoff).delete()
    return {"events": events, "visitors": visitors, "cutoff": cutoff.isoformat()}
