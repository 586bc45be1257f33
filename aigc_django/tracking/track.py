"""``track()``: record what a visitor did from a view."""

from __future__ import annotations

import logging
import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.db import DatabaseError, models
from django.http import HttpRequest

from aigc_django.catalog import get_catalog
from aigc_django.exceptions import InvalidEvent
from aigc_django.tracking import ingest
from aigc_django.tracking.events import clean_event
from aigc_django.tracking.visitors import request_context, visitor_id_for

logger = logging.getLogger("aigc_django.tracking")


def _item_keys(item: Any, category: Any) -> tuple[Any, Any]:
    if isinstance(category, models.Model):
        category = str(category.pk)
    if not isinstance(item, models.Model):
        return item, category
    catalog = get_catalog()
    if catalog is not None and isinstance(item, catalog.model):
        return catalog.item_key(item), category or catalog.category_key(item)
    return str(item.pk), category


def track(
    request: HttpRequest | None,
    kind: str,
    *,
    item: Any = None,
    category: Any = None,
    value: float | None = None,
    properties: dict[str, Any] | None = None,
    occurred_at: datetime | None = None,
    visitor: uuid.UUID | str | None = None,
) -> bool:
    """Record one event for the visitor of ``request`` (or the explicit ``visitor`` id).

    With a request, ``properties`` also get the visitor's ``device`` class and the
    ``referrer`` host when they came from another site (what rule segments match on).

    ``item`` may be a product of the configured catalog (its key and category are read
    through ``AIGC["CATALOG"]``) or a key string. Returns True when the event was recorded,
    False when the visitor is not tracked (bot, Do-Not-Track, GPC, no consent) or the
    database refused the write (logged; a page never fails because of tracking).

    Raises :class:`aigc_django.exceptions.InvalidEvent` for an unknown ``kind`` (a
    programming error). Any other invalid field, which may come from a visitor's input (a
    search query over ``MAX_PROPERTIES_BYTES``, say), is logged and the event dropped.
    """
    visitor_id = (
        visitor
        if visitor is not None
        else (visitor_id_for(request) if request is not None else None)
    )
    if visitor_id is None:
        return False
    item_key, category_key = _item_keys(item, category)
    if request is not None and (properties is None or isinstance(properties, dict)):
        properties = {**request_context(request), **(properties or {})}
    try:
        event = clean_event(
            {
                "kind": kind,
                "item": item_key,
                "category": category_key,
                "value": float(value) if isinstance(value, Decimal) else value,
                "properties": properties,
                "occurred_at": occurred_at,
            },
            visitor_id=visitor_id,
        )
    except InvalidEvent as exc:
        if exc.field == "kind":
            raise
        logger.warning("Dropped a %s event: %s", kind, exc)
        return False
    try:
        ingest.record([event])
    except DatabaseError:
        logger.exception("Could not record a %s event.", kind)
        return False
    return True
