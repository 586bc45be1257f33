"""The approved variants of every slot, per segment, in Django's cache.

Delivery reads nothing else on its warm path, so a page with personalized slots makes no
database query once the cache is filled. Entries are small plain dicts (picklable, cheap to
unpickle) keyed by a version number that every review decision and every slot change bumps:
a bump makes every entry unreachable at once, and the next request refills them.

Keys, for version ``v``:

* ``aigc:delivery:v:<slot>:<segment>``: the slot, the segment's approved variants and the
  ``everyone`` segment's, for each segment that has approved variants of the slot;
* ``aigc:delivery:v:<slot>:*``: the same for any other segment (no variants of its own);
* ``aigc:delivery:v:slots``: the keys of every slot, so that a template naming a slot that
  does not exist queries the database at most once per version, not on every render.

Outages never fail a page. While the cache is unreachable, entries are read from the
database on every request (slower, still correct) and this process bumps the version once
the cache answers again, since decisions made meanwhile could not. While the database is
unreachable, cached entries are served as usual; a slot whose entry is not cached shows its
fallback content as last read (kept in the process and, without expiry, in the cache under
``aigc:delivery:last-slots``), never a variant that may have been rejected since.

A miss fills every slot at once with one query (slots left-joined to their approved
variants), so a page with several slots makes one query on a cold cache, not one per slot.
Storage URLs of the banner files are computed at fill time.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from django.core.cache import cache
from django.core.files.storage import default_storage
from django.db import Error as DatabaseError
from django.db.models import FilteredRelation, Q
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from aigc_django.conf import aigc_settings
from aigc_django.generation.images import srcset
from aigc_django.models import Slot, Variant
from aigc_django.moderation.signals import variant_reviewed

logger = logging.getLogger(__name__)

VERSION_KEY = "aigc:delivery:version"
EVERYONE = "everyone"
ANY_SEGMENT = "*"
MISSING: dict[str, Any] = {"missing": True}
# The version while the cache is unreachable: entries come from the database, uncached.
UNCACHED = 0


def version() -> int:
    """The current version of the delivery cache; :data:`UNCACHED` while it is unreachable."""
    try:
        found = cache.get(VERSION_KEY)
        if found is None:
            cache.add(VERSION_KEY, _fresh_version(), timeout=None)
            found = cache.get(VERSION_KEY, 1)
    except Exception as exc:
        cache_down(exc)
        return UNCACHED
    if _outage["seen"]:
        # Back after an outage: decisions made meanwhile could not bump the version, so
        # this process bumps it once (entries cached before the outage are dropped).
        _outage["seen"] = False
        bump_version()
        try:
            found = cache.get(VERSION_KEY, found)
        except Exception as exc:
            cache_down(exc)
            return UNCACHED
    return int(found)


def saw_outage() -> bool:
    """Whether this process saw the cache fail and has not bumped the version since (the
    next :func:`version` call does)."""
    return _outage["seen"]


def cache_down(exc: BaseException) -> None:
    """Note that the cache is unreachable (logged); this process bumps the version once it
    is back."""
    _outage["seen"] = True
    logger.warning("Cache unreachable (%s); delivery reads the database meanwhile.", exc)


# Whether this process saw the cache fail since it last read the version.
_outage = {"seen": False}


def _fresh_version() -> int:
    # From the clock, so that a version key evicted from the cache comes back higher than
    # before and never makes old entries reachable again.
    return time.time_ns() // 1000


def bump_version() -> None:
    """Make every cached entry unreachable; the next request refills them from the database.

    Called after every review decision (``variant_reviewed``) and every slot save or delete.
    Call it after changing approved variants or slots by other means (``QuerySet.update``,
    a data migration, flushing counters into the database).
    """
    try:
        try:
            cache.incr(VERSION_KEY)
        except ValueError:
            # Never set, or evicted.
            cache.set(VERSION_KEY, _fresh_version(), timeout=None)
    except Exception as exc:
        # The cache is down: nothing cached can be read now, and this process bumps the
        # version when the cache is back.
        cache_down(exc)


def slots_key(cache_version: int) -> str:
    return f"aigc:delivery:{cache_version}:slots"


def entry_key(cache_version: int, slot_key: str, segment_key: str) -> str:
    return f"aigc:delivery:{cache_version}:{slot_key}:{segment_key}"


def entry_keys(cache_version: int, slot_key: str, segment_key: str) -> list[str]:
    """The keys to read for a slot and segment: the segment's own, then the catch-all."""
    return [
        entry_key(cache_version, slot_key, segment_key),
        entry_key(cache_version, slot_key, ANY_SEGMENT),
    ]


def pick_entry(found: dict[str, Any], cache_version: int, slot_key: str, segment_key: str):
    """The entry for ``segment_key`` among the values of :func:`entry_keys`, or None on a miss.

    The catch-all entry answers only for segments it says have no variants of their own, so
    a segment entry that was evicted on its own is a miss, not a silent fall to everyone.
    """
    own = found.get(entry_key(cache_version, slot_key, segment_key))
    if own is not None:
        return own
    shared = found.get(entry_key(cache_version, slot_key, ANY_SEGMENT))
    if shared is None:
        return None
    if segment_key in shared.get("segments_with_variants", ()):
        return None
    return shared


# Entries already read by this process, for the one version last seen. Entries never change
# within a version, so a version read from the shared cache on each request is all it takes
# to know these are current; it spares unpickling the same entries on every request.
_local: dict[str, Any] = {"version": None, "entries": {}}


def local_entry(cache_version: int, slot_key: str, segment_key: str) -> dict | None:
    """The entry this process already read for this version, slot and segment, if any."""
    if _local["version"] != cache_version:
        return None
    return _local["entries"].get((slot_key, segment_key))


def _remember(cache_version: int, slot_key: str, segment_key: str, entry: dict) -> dict:
    if _local["version"] != cache_version:
        # A new version: start over (replaced, not cleared, for threads reading the old).
        _local.update(version=cache_version, entries={})
    _local["entries"][(slot_key, segment_key)] = entry
    return entry


def forget_local() -> None:
    """Drop this process's copies of the entries and of the slots (tests that edit the
    cache by hand)."""
    _local.update(version=None, entries={})
    _last_slots.clear()


def slot_entry(slot_key: str, segment_key: str, cache_version: int | None = None) -> dict:
    """The cached entry of a slot for a segment, filling the cache on a miss.

    The entry is ``{"missing": True}`` for an unknown slot, else::

        {"slot": {"key", "kind", "link", "fallback", "active", "sizes"},
         "segment": <the segment's key, or "*">,
         "variants": [<the segment's approved variants>],
         "everyone": [<the everyone segment's approved variants>],
         "segments_with_variants": [...]}  # the catch-all entry only

    Each variant is a dict made by :func:`variant_dict`.
    """
    if cache_version is None:
        cache_version = version()
    keys = entry_keys(cache_version, slot_key, segment_key)
    if cache_version == UNCACHED:
        found = None
    else:
        try:
            found = cache.get_many([*keys, slots_key(cache_version)])
        except Exception as exc:
            cache_down(exc)
            found = None
    if found is None:
        # The cache is down: read the database on every request (slower, still correct),
        # this slot's variants for this segment and everyone only.
        try:
            entries, slots = load(cache_version, slot_key, [segment_key, EVERYONE])
        except DatabaseError as exc:
            return database_down_entry(slot_key, exc)
        _last_slots.update(slots)
        return entries.get(keys[0]) or entries.get(keys[1]) or MISSING
    entry = pick_entry(found, cache_version, slot_key, segment_key)
    if entry is None:
        known = found.get(slots_key(cache_version))
        if known is not None and slot_key not in known:
            entry = MISSING
        else:
            try:
                entries = fill(cache_version)
            except DatabaseError as exc:
                return database_down_entry(slot_key, exc)
            entry = entries.get(keys[0]) or entries.get(keys[1]) or MISSING
    return _remember(cache_version, slot_key, segment_key, entry)


def database_down_entry(slot_key: str, exc: BaseException) -> dict[str, Any]:
    """What a slot shows while the database is unreachable and its entry is not cached: the
    slot's fallback content, as last read from the database (never a variant: one approved
    then may have been rejected since). Not remembered, so the next request tries again."""
    logger.warning("Database unreachable (%s); %r shows its fallback content.", exc, slot_key)
    reason = f"the database is unreachable ({type(exc).__name__})"
    slot = _last_slots.get(slot_key)
    if slot is None:
        try:
            slot = (cache.get(LAST_SLOTS_KEY) or {}).get(slot_key)
        except Exception as cache_error:
            cache_down(cache_error)
    if slot is None:
        return {**MISSING, "reason": f"{reason}, and slot {slot_key!r} was never read"}
    return {"slot": slot, "segment": ANY_SEGMENT, "variants": [], "everyone": [], "reason": reason}


# The slots (link, fallback content) as last read from the database, for database outages:
# kept in this process and in the cache (without expiry), refreshed by every fill.
LAST_SLOTS_KEY = "aigc:delivery:last-slots"
_last_slots: dict[str, dict[str, Any]] = {}


def fill(cache_version: int) -> dict[str, dict]:
    """Load every slot and its approved variants (one query) and cache the entries."""
    entries, slots = load(cache_version)
    _last_slots.clear()
    _last_slots.update(slots)
    timeout = aigc_settings.DELIVERY["CACHE_TIMEOUT"]
    try:
        cache.set_many(entries, timeout)
        cache.set(LAST_SLOTS_KEY, slots, None)
        # Last: a reader that finds the list finds the entries it names (unless evicted).
        cache.set(slots_key(cache_version), sorted(slots), timeout)
    except Exception as exc:
        cache_down(exc)
    return entries


def load(
    cache_version: int, slot_key: str | None = None, segments: list[str] | None = None
) -> tuple[dict[str, dict], dict[str, dict]]:
    """Every slot's entries under ``cache_version`` (one query) and the slots' dicts; only
    ``slot_key``'s, with the variants of ``segments`` only, when given (the cache is down:
    one slot for one visitor)."""
    condition = Q(variants__status=Variant.Status.APPROVED)
    slot_rows = Slot.objects.all() if slot_key is None else Slot.objects.filter(key=slot_key)
    rows = (
        slot_rows.annotate(approved=FilteredRelation("variants", condition=condition))
        .order_by("key", "approved__id")
        .values(
            "key",
            "kind",
            "link",
            "fallback",
            "active",
            "sizes",
            "approved__id",
            "approved__copy",
            "approved__alt_text",
            "approved__renditions",
            "approved__impressions",
            "approved__clicks",
            "approved__status",
            "approved__segment__key",
        )
    )
    slots: dict[str, dict] = {}
    variants: dict[str, dict[str, list[dict]]] = {}
    for row in rows:
        key = row["key"]
        if key not in slots:
            slots[key] = slot_dict(row)
            variants[key] = {}
        if row["approved__id"] is None:
            continue
        if segments is not None and row["approved__segment__key"] not in segments:
            continue
        variant = variant_dict(
            {name[len("approved__") :]: value for name, value in row.items() if "__" in name},
            slots[key],
        )
        variants[key].setdefault(row["approved__segment__key"], []).append(variant)

    entries: dict[str, dict] = {}
    for key, slot in slots.items():
        by_segment = variants[key]
        everyone = by_segment.get(EVERYONE, [])
        for segment_key, own in by_segment.items():
            entries[entry_key(cache_version, key, segment_key)] = {
                "slot": slot,
                "segment": segment_key,
                "variants": own,
                "everyone": everyone,
            }
        entries[entry_key(cache_version, key, ANY_SEGMENT)] = {
            "slot": slot,
            "segment": ANY_SEGMENT,
            "variants": [],
            "everyone": everyone,
            "segments_with_variants": sorted(by_segment),
        }
    return entries, slots


def slot_dict(row: dict[str, Any]) -> dict[str, Any]:
    """What delivery needs of a slot, from a row with the slot's fields."""
    fallback = row.get("fallback")
    return {
        "key": row["key"],
        "kind": row["kind"],
        "link": row.get("link") or "",
        "fallback": fallback if isinstance(fallback, dict) else {},
        "active": bool(row.get("active", True)),
        "sizes": [f"{w}x{h}" for w, h in _valid_sizes(row.get("sizes"))],
    }


def variant_dict(row: dict[str, Any], slot: dict[str, Any]) -> dict[str, Any]:
    """A variant as delivery renders it: copy as strings, pictures with storage URLs."""
    copy = row.get("copy")
    copy = (
        {str(k): str(v) for k, v in copy.items() if v is not None} if isinstance(copy, dict) else {}
    )
    return {
        "id": row["id"],
        "slot": slot["key"],
        "segment": row.get("segment__key") or "",
        "status": row.get("status") or "",
        "copy": copy,
        "alt_text": row.get("alt_text") or "",
        "link": slot["link"],
        "pictures": pictures(row.get("renditions"), row["id"], slot.get("sizes")),
        "impressions": int(row.get("impressions") or 0),
        "clicks": int(row.get("clicks") or 0),
    }


def variant_from_model(variant: Variant) -> dict[str, Any]:
    """:func:`variant_dict` of a model instance (staff preview, which reads the database)."""
    slot = slot_dict(
        {
            "key": variant.slot.key,
            "kind": variant.slot.kind,
            "link": variant.slot.link,
            "fallback": variant.slot.fallback,
            "active": variant.slot.active,
            "sizes": variant.slot.sizes,
        }
    )
    row = {
        "id": variant.pk,
        "segment__key": variant.segment.key,
        "status": variant.status,
        "copy": variant.copy,
        "alt_text": variant.alt_text,
        "renditions": variant.renditions,
        "impressions": variant.impressions,
        "clicks": variant.clicks,
    }
    return {**variant_dict(row, slot), "slot_data": slot}


def size_labels(sizes: Any) -> list[str]:
    """A slot's sizes (labels like ``"1200x628"`` or ``[w, h]`` pairs) as labels, in order;
    malformed entries are left out."""
    labels = []
    for size in sizes if isinstance(sizes, list | tuple) else []:
        if isinstance(size, str):
            labels.append(size)
            continue
        try:
            labels.append(f"{int(size[0])}x{int(size[1])}")
        except (IndexError, TypeError, ValueError):
            continue
    return labels


def pictures(renditions: Any, variant_id: Any = None, sizes: Any = None) -> dict[str, dict]:
    """Per size label, what a ``<picture>`` needs: width, height, ``src``, ``srcset``, sources.

    The first file's format (the master, WebP by default) becomes a ``<source>``; the other
    format (JPEG or PNG) is the ``<img>``'s ``srcset`` and ``src`` (its widest file), for
    browsers without the first. With one format only, the ``<img>`` carries it and there is
    no ``<source>``. Sizes with broken data are skipped (and logged), never raised.

    The sizes come in the slot's order (``sizes``: labels like ``"1200x628"`` or
    ``[w, h]`` pairs), so "the first size" is
    the slot's first: PostgreSQL's ``jsonb`` does not keep the keys of ``renditions`` in
    order.
    """
    found: dict[str, dict] = {}
    if not isinstance(renditions, dict):
        return found
    labels = [label for label in size_labels(sizes) if label in renditions]
    labels += [label for label in renditions if label not in labels]
    for label in labels:
        entry = renditions[label]
        try:
            by_format: dict[str, dict[int, str]] = {}
            for file in entry.get("files") or []:
                name = file.get("name")
                if not name:
                    continue
                fmt = str(file.get("format") or name.rsplit(".", 1)[-1]).upper()
                if fmt == "JPG":
                    fmt = "JPEG"
                by_format.setdefault(fmt, {})[int(file["width"])] = default_storage.url(name)
            if not by_format:
                continue
            formats = list(by_format)
            primary = formats[0]
            fallback = next((f for f in formats[1:] if f != primary), primary)
            img = by_format[fallback]
            found[str(label)] = {
                "size": str(label),
                "width": int(entry["width"]),
                "height": int(entry["height"]),
                "src": img[max(img)],
                "srcset": srcset(img),
                "type": f"image/{fallback.lower()}",
                "sources": (
                    [{"type": f"image/{primary.lower()}", "srcset": srcset(by_format[primary])}]
                    if fallback != primary
                    else []
                ),
            }
        except (AttributeError, KeyError, TypeError, ValueError):
            logger.warning(
                "Variant %s has broken rendition data for %r; skipped.", variant_id, label
            )
    return found


def _valid_sizes(sizes: Any) -> list[tuple[int, int]]:
    valid = []
    for size in sizes if isinstance(sizes, list) else []:
        try:
            width, height = size
            valid.append((int(width), int(height)))
        except (TypeError, ValueError):
            continue
    return valid


@receiver(variant_reviewed, dispatch_uid="aigc_delivery_variant_reviewed")
def bump_on_review(sender: Any, **kwargs: Any) -> None:
    """A decision on a variant changes what may be shown: refill the cache."""
    bump_version()


@receiver(post_save, sender=Slot, dispatch_uid="aigc_delivery_slot_saved")
@receiver(post_delete, sender=Slot, dispatch_uid="aigc_delivery_slot_deleted")
def bump_on_slot_change(sender: Any, **kwargs: Any) -> None:
    """A slot's link, fallback or activity changed (or the slot is gone): refill the cache."""
    bump_version()
