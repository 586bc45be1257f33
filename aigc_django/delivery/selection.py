"""Which variant of a slot a request shows: segment, fallback chain, stickiness, bandit.

``choose(request, slot_key)`` walks the chain

1. the approved variants of the slot for the visitor's segment (``profiles.lookup``: rule
   segments already win over learned ones in the profile build);
2. the approved variants for the ``everyone`` segment;
3. the slot's fallback content;
4. nothing;

and among the variants of the first step that has any, keeps the one the visitor saw last
(for ``AIGC["DELIVERY"]["STICKY_SECONDS"]`` after it was drawn, while it is still approved)
or draws one by Thompson sampling over its clicks and impressions (the database's counters
as cached, plus the ones not flushed yet). Every answer is remembered on the request, so
the headline and the body of one slot always come from the same variant.

Staff with ``aigc_django.view_variant`` preview any variant on the real page with
``?aigc_preview=<id>`` (``AIGC["DELIVERY"]["PREVIEW_PARAMETER"]``); a preview request counts
no impression and writes no stickiness.

Visitors who are not tracked (bots, no consent, Do-Not-Track) see the ``everyone`` segment's
variants, without stickiness and without impressions. Nothing here runs a model; on a warm
cache nothing here queries the database.
"""

from __future__ import annotations

import contextlib
import logging
import random
import time
from dataclasses import dataclass, field
from typing import Any

from django.core.cache import cache as django_cache
from django.db import Error as DatabaseError
from django.dispatch import receiver
from django.http import HttpRequest

from aigc_django.conf import aigc_settings
from aigc_django.delivery import bandit, counters
from aigc_django.delivery import cache as delivery_cache
from aigc_django.profiles import lookup

logger = logging.getLogger(__name__)

EVERYONE = lookup.EVERYONE
STATE_ATTRIBUTE = "_aigc_delivery"
PREVIEW_PERMISSION = "aigc_django.view_variant"

_rng = random.Random()


@dataclass
class Choice:
    """What a slot shows to one request.

    ``variant`` is the chosen variant's dict (see ``delivery.cache.variant_dict``) or None;
    ``fallback`` the slot's fallback content when the chain reached it (else empty);
    ``segment`` the segment whose variants were used (``"everyone"`` after the first
    fallback, ``""`` when no variant was); ``reason`` says why the first choice did not
    apply (empty for a plain hit), for the DEBUG comment; ``slot`` the slot's cached dict
    (None for an unknown slot).
    """

    slot_key: str
    variant: dict[str, Any] | None = None
    segment: str = ""
    reason: str = ""
    fallback: dict[str, Any] = field(default_factory=dict)
    slot: dict[str, Any] | None = None
    preview: bool = False

    @property
    def is_fallback(self) -> bool:
        return self.variant is None and bool(self.fallback)

    @property
    def is_empty(self) -> bool:
        return self.variant is None and not self.fallback


@dataclass
class RequestState:
    """What one request has already looked up (kept on the request object)."""

    cache_version: int | None = None
    segment: str | None = None
    choices: dict[str, Choice] = field(default_factory=dict)
    impressions: set[int] = field(default_factory=set)
    preview_checked: bool = False
    preview: dict[str, Any] | None = None
    sticky: dict[str, tuple[int, float]] = field(default_factory=dict)


def request_state(request: Any) -> RequestState:
    """The delivery state of ``request``, made on first use."""
    state = getattr(request, STATE_ATTRIBUTE, None)
    if state is None:
        state = RequestState()
        # An object that takes no attributes: no memory, still works.
        with contextlib.suppress(AttributeError):
            setattr(request, STATE_ATTRIBUTE, state)
    return state


def tracked_visitor(request: Any) -> Any:
    """The visitor id of a tracked request, or None (bots, no consent, no middleware)."""
    if not getattr(request, "aigc_tracking", False):
        return None
    return getattr(request, "aigc_visitor_id", None)


# The sticky entry also keeps the visitor's segment, under this name.
SEGMENT_ENTRY = ":segment"  # a colon: no slot key (a slug) can clash


def sticky_key(visitor_id: Any) -> str:
    """The cache key of a visitor's sticky picks: ``{slot key: (variant id, expiry time)}``.

    One key per visitor rather than per slot, so that a page reads all of its slots' picks
    in one cache round trip.
    """
    return f"aigc:sticky:{visitor_id}"


@receiver(lookup.segments_forgotten, dispatch_uid="aigc_delivery_segments_forgotten")
def forget_sticky(sender: Any, visitor_ids: list[Any], **kwargs: Any) -> None:
    """The visitors' segments changed (or they were erased): drop their sticky entries,
    which keep the segment beside the picks."""
    django_cache.delete_many([sticky_key(v) for v in visitor_ids])


def choose(request: HttpRequest | Any, slot_key: str, rng: random.Random | None = None) -> Choice:
    """The variant (or fallback content) ``slot_key`` shows to ``request``; see the module.

    Remembered on the request: a second call for the same slot returns the same choice.
    """
    state = request_state(request)
    choice = state.choices.get(slot_key)
    if choice is None:
        choice = _choose(request, state, slot_key, rng or _rng)
        state.choices[slot_key] = choice
    return choice


def _choose(request: Any, state: RequestState, slot_key: str, rng: random.Random) -> Choice:
    preview = previewed_variant(request, state)
    if preview is not None and preview["slot"] == slot_key:
        return Choice(
            slot_key,
            variant=preview,
            segment=preview["segment"],
            reason=f"staff preview of variant #{preview['id']} ({preview['status']})",
            slot=preview["slot_data"],
            preview=True,
        )

    visitor_id = tracked_visitor(request)
    if state.cache_version is None:
        _start(state, visitor_id)
    version, segment = state.cache_version, state.segment
    assert version is not None and segment is not None

    entry = delivery_cache.local_entry(version, slot_key, segment)
    if entry is None:
        entry = delivery_cache.slot_entry(slot_key, segment, version)
    if entry.get("missing"):
        return Choice(slot_key, reason=entry.get("reason") or f"there is no slot {slot_key!r}")

    slot = entry["slot"]
    fallback = slot["fallback"]
    if not slot["active"]:
        reason = f"slot {slot_key!r} is not active"
        return _fallback_choice(slot_key, slot, fallback, reason)

    candidates, used, reason = entry["variants"], segment, ""
    if not candidates:
        candidates, used = entry["everyone"], EVERYONE
        if segment != EVERYONE:
            reason = (
                f"no approved variant of {slot_key!r} for segment {segment!r}; using everyone's"
            )
    if not candidates:
        reason = (
            entry.get("reason")
            or f"no approved variant of {slot_key!r} for segment {segment!r} or everyone"
        )
        return _fallback_choice(slot_key, slot, fallback, reason)

    by_id = {variant["id"]: variant for variant in candidates}
    now = time.time()
    remembered = state.sticky.get(slot_key)
    if remembered is not None and remembered[1] > now and remembered[0] in by_id:
        return Choice(slot_key, by_id[remembered[0]], used, reason, slot=slot)

    cached = version != delivery_cache.UNCACHED  # else the cache is down: skip it
    picked = pick(candidates, rng, with_pending=cached)
    if visitor_id is not None and state.preview is None and cached:
        seconds = int(aigc_settings.DELIVERY["STICKY_SECONDS"])
        if seconds > 0:
            state.sticky = {
                key: value
                for key, value in state.sticky.items()
                if key == SEGMENT_ENTRY or value[1] > now
            }
            state.sticky[slot_key] = (picked, now + seconds)
            _cache_set(sticky_key(visitor_id), state.sticky, seconds)
    return Choice(slot_key, by_id[picked], used, reason, slot=slot)


def _start(state: RequestState, visitor_id: Any) -> None:
    """Read what every slot of the request needs in one cache round trip: the slot cache's
    version, the visitor's sticky picks and, kept beside them, the visitor's segment with
    the segment version it was read under (a rebuild bumps that version, so a stale segment
    is never used). Only when that segment is missing or stale is the lookup asked."""
    if visitor_id is None:
        state.cache_version = delivery_cache.version()
        state.segment = EVERYONE
        return
    key = sticky_key(visitor_id)
    try:
        found = django_cache.get_many([delivery_cache.VERSION_KEY, lookup.VERSION_KEY, key])
    except Exception as exc:
        # The cache is down: no stickiness, the segment from the database.
        delivery_cache.cache_down(exc)
        state.cache_version = delivery_cache.UNCACHED
        state.sticky = {}
        state.segment = _segment_from_database(visitor_id)
        return
    version = found.get(delivery_cache.VERSION_KEY)
    if version is None or delivery_cache.saw_outage():
        state.cache_version = delivery_cache.version()  # bumps it after an outage
    else:
        state.cache_version = int(version)
    sticky = found.get(key)
    state.sticky = sticky if isinstance(sticky, dict) else {}
    remembered = state.sticky.get(SEGMENT_ENTRY)
    segments_version = found.get(lookup.VERSION_KEY)
    if (
        isinstance(remembered, tuple)
        and segments_version is not None
        and remembered[1] == segments_version
    ):
        state.segment = remembered[0]
        return
    try:
        state.segment = lookup.segment_key_for(visitor_id)
    except DatabaseError as exc:
        logger.warning("Database unreachable (%s); showing everyone's content.", exc)
        state.segment = EVERYONE
        return
    except Exception as exc:  # the cache failed between the two calls
        delivery_cache.cache_down(exc)
        state.segment = _segment_from_database(visitor_id)
        return
    seconds = int(aigc_settings.DELIVERY["STICKY_SECONDS"])
    if segments_version is not None and seconds > 0:
        state.sticky[SEGMENT_ENTRY] = (state.segment, segments_version)
        _cache_set(key, state.sticky, seconds)


def _segment_from_database(visitor_id: Any) -> str:
    """The visitor's segment read from the database (the cache is down); "everyone" when
    the database is down too."""
    try:
        return lookup.segment_from_database(visitor_id)
    except DatabaseError as exc:
        logger.warning("Database unreachable (%s); showing everyone's content.", exc)
        return EVERYONE


def _cache_set(key: str, value: Any, timeout: int) -> None:
    """Write stickiness; while the cache is down, visitors simply are not sticky."""
    try:
        django_cache.set(key, value, timeout)
    except Exception as exc:
        delivery_cache.cache_down(exc)


def _fallback_choice(slot_key: str, slot: dict, fallback: dict, reason: str) -> Choice:
    if fallback:
        return Choice(
            slot_key, reason=f"{reason}; showing the fallback content", fallback=fallback, slot=slot
        )
    return Choice(slot_key, reason=f"{reason}, and the slot has no fallback content", slot=slot)


def pick(candidates: list[dict[str, Any]], rng: random.Random, *, with_pending: bool = True) -> int:
    """Thompson sampling over the candidates' counters, flushed and (unless
    ``with_pending`` is False: the cache is down) pending."""
    ids = [variant["id"] for variant in candidates]
    if len(ids) == 1:
        return ids[0]
    pending = counters.pending_counts(ids) if with_pending else {}
    counts = {}
    for variant in candidates:
        extra_impressions, extra_clicks = pending.get(variant["id"], (0, 0))
        counts[variant["id"]] = (
            variant["impressions"] + extra_impressions,
            variant["clicks"] + extra_clicks,
        )
    return bandit.thompson_pick(ids, counts, rng)


def preview_id(request: Any) -> int | None:
    """The variant id in the request's preview parameter, if any (not checked for rights)."""
    meta = getattr(request, "META", None)
    if (
        isinstance(meta, dict)
        and not meta.get("QUERY_STRING")
        and "GET" not in getattr(request, "__dict__", {})
    ):
        # No query string and GET never built or set: no preview, and no QueryDict parsed
        # on a page that never reads its parameters.
        return None
    params = getattr(request, "GET", None)
    if not params:
        return None
    value = params.get(aigc_settings.DELIVERY["PREVIEW_PARAMETER"])
    if value is None:
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def may_preview(request: Any) -> bool:
    """Staff users with the ``view_variant`` permission may preview any variant."""
    user = getattr(request, "user", None)
    return bool(
        user is not None
        and user.is_authenticated
        and user.is_staff
        and user.has_perm(PREVIEW_PERMISSION)
    )


def previewed_variant(request: Any, state: RequestState | None = None) -> dict[str, Any] | None:
    """The variant a staff user previews on this request (any status), or None.

    Reads the database (the preview is for staff, never on a visitor's warm path).
    """
    state = state or request_state(request)
    if not state.preview_checked:
        state.preview_checked = True
        wanted = preview_id(request)
        if wanted is not None and may_preview(request):
            from aigc_django.models import Variant

            variant = Variant.objects.select_related("slot", "segment").filter(pk=wanted).first()
            if variant is not None:
                state.preview = delivery_cache.variant_from_model(variant)
    return state.preview


def record_impression(request: Any, choice: Choice) -> bool:
    """Count one impression of the choice's variant, once per request; True when counted.

    Nothing is counted for fallback content, for visitors who are not tracked, and on a
    staff preview request (of any slot).
    """
    if choice.variant is None or choice.preview:
        return False
    state = request_state(request)
    if state.preview is not None or tracked_visitor(request) is None:
        return False
    variant_id = choice.variant["id"]
    if variant_id in state.impressions:
        return False
    state.impressions.add(variant_id)
    counters.record_impressions([variant_id])
    return True
