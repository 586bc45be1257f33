"""Signed click links: ``/aigc/r/<token>/`` counts a click on a variant and redirects.

The token is a ``django.core.signing.Signer`` object (salted, keyed by ``SECRET_KEY``) over the
variant id, the slot key and the target, so nobody can make the redirect send a visitor
elsewhere or count clicks on a variant the page never linked. The target is checked when
signing and again when redirecting: a path on this site (``/shop/sale/``) or an http(s) URL
whose host matches ``ALLOWED_HOSTS`` (a ``"*"`` entry is ignored here: it would allow every
host). ``//evil.com``, ``/\\evil.com``, ``javascript:`` and relative paths without a
leading slash are refused.

The last click of a tracked visitor is kept in the cache for the conversion window, so that
a purchase can be attributed to it (see :func:`attribute_conversion`).
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core import signing
from django.core.cache import cache
from django.http.request import validate_host
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme

from aigc_django.conf import aigc_settings
from aigc_django.delivery import counters

CLICK_SALT = "aigc_django.delivery.click"

logger = logging.getLogger("aigc_django.delivery")


class UnsafeTarget(ValueError):
    """A click target that is neither a path on this site nor a URL on an allowed host."""


@dataclass(frozen=True)
class Click:
    """What a click token says: the variant, the slot it was shown in, where it leads."""

    variant_id: int
    slot_key: str
    target: str


def _allowed_hosts() -> list[str]:
    return [host for host in settings.ALLOWED_HOSTS if host != "*"]


def is_safe_target(target: Any) -> bool:
    """Whether ``target`` is a path on this site or an http(s) URL on an allowed host."""
    if not isinstance(target, str) or not target or len(target) > 2000:
        return False
    if any(ord(char) < 32 or char == "\\" for char in target):
        return False
    parts = urlsplit(target)
    if not parts.scheme and not parts.netloc:
        # A path: must start with one slash ("//host" is a scheme-relative URL).
        return target.startswith("/") and url_has_allowed_host_and_scheme(
            target, allowed_hosts=set()
        )
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.username:
        return False
    host = parts.netloc
    return validate_host(parts.hostname, _allowed_hosts()) and url_has_allowed_host_and_scheme(
        target, allowed_hosts={host}
    )


def sign_click(variant_id: int, slot_key: str, target: str) -> str:
    """The token for a click link; raises :class:`UnsafeTarget` for an unsafe target."""
    if not is_safe_target(target):
        raise UnsafeTarget(f"Refusing to sign a click link to {target!r}.")
    # No timestamp: one link per (variant, slot, target), the same in every page and cache.
    return signing.Signer(salt=CLICK_SALT).sign_object(
        {"v": int(variant_id), "s": str(slot_key), "t": target}
    )


def click_url(variant_id: int, slot_key: str, target: str) -> str:
    """The signed redirect URL (``/aigc/r/<token>/``) for a link from a variant to ``target``.

    Raises :class:`UnsafeTarget` when ``target`` is not a path on this site or a URL on a
    host in ``ALLOWED_HOSTS``.
    """
    return reverse("aigc:click", kwargs={"token": sign_click(variant_id, slot_key, target)})


def read_click(token: str) -> Click | None:
    """The click a token names, or None when it is tampered, foreign or its target unsafe."""
    try:
        data = signing.Signer(salt=CLICK_SALT).unsign_object(token)
    except (signing.BadSignature, ValueError):
        return None
    if not isinstance(data, dict):
        return None
    variant_id, slot_key, target = data.get("v"), data.get("s"), data.get("t")
    if not isinstance(variant_id, int) or isinstance(variant_id, bool) or variant_id < 1:
        return None
    if not isinstance(slot_key, str) or not is_safe_target(target):
        return None
    return Click(variant_id=variant_id, slot_key=slot_key, target=target)


def _last_click_key(visitor_id: uuid.UUID | str) -> str:
    return f"aigc:fb:last_click:{visitor_id}"


def window_seconds() -> int:
    """The conversion window, ``DELIVERY["CONVERSION_WINDOW_HOURS"]``, in seconds."""
    return int(float(aigc_settings.DELIVERY["CONVERSION_WINDOW_HOURS"]) * 3600)


def forget_clicks(visitor_ids: list) -> None:
    """Drop the visitors' last clicks (erasure); raises when the cache is unreachable."""
    cache.delete_many([_last_click_key(v) for v in visitor_ids])


def remember_click(
    visitor_id: uuid.UUID | str, variant_id: int, *, at: float | None = None
) -> None:
    """Keep a visitor's last click for the conversion window (a later click replaces it)."""
    clicked_at = time.time() if at is None else at
    cache.set(_last_click_key(visitor_id), (int(variant_id), clicked_at), window_seconds())


def attribute_conversion(visitor_id: uuid.UUID | str, *, at: float | None = None) -> int | None:
    """Count a purchase as a conversion of the visitor's last click; return the variant id.

    The click must be at most ``CONVERSION_WINDOW_HOURS`` before the purchase (``at``, now
    by default) and not after it. A click converts at most once: the first purchase after
    it consumes it, later purchases count only after another click. Returns None when
    there is no such click.
    """
    key = _last_click_key(visitor_id)
    last = cache.get(key)
    if not last:
        return None
    variant_id, clicked_at = last
    purchased_at = time.time() if at is None else at
    if not (0 <= purchased_at - clicked_at <= window_seconds()):
        return None
    # delete() says whether the key was there: of two purchases racing for one click,
    # only one counts.
    if not cache.delete(key):
        return None
    counters.record_conversion(variant_id)
    return variant_id


def record_click(
    click: Click, *, visitor_id: uuid.UUID | str | None, at: float | None = None
) -> bool:
    """Count a tracked visitor's click on the variant and remember it for conversions.

    Clicks of visitors who are not tracked (``visitor_id`` None: bots, Do-Not-Track, GPC,
    no consent) are not counted, as their impressions are not: the click-through stays a
    ratio over the same visitors. Returns True when counted. The caller records the
    ``click`` event through ``track()``.
    """
    if visitor_id is None:
        return False
    counters.record_click(click.variant_id, at=at)
    try:
        remember_click(visitor_id, click.variant_id, at=at)
    except Exception:
        # The cache is down: the click counts (in the database), the redirect works; only
        # a purchase after it cannot be attributed to it.
        logger.warning("Could not keep the click for conversions.", exc_info=True)
    return True


def attribute_purchases(events: Iterable[dict[str, Any]]) -> int:
    """Attribute each ``purchase`` among clean events to its visitor's last click.

    Called by :func:`aigc_django.tracking.ingest.record` once the events are stored (or
    accepted into the buffer), so purchases from ``track()`` and from the ingest API both
    count. Returns the number of conversions counted.
    """
    converted = 0
    for event in events:
        if event.get("kind") != "purchase" or not event.get("visitor"):
            continue
        occurred_at = event.get("occurred_at")
        at = datetime.fromisoformat(occurred_at).timestamp() if occurred_at else None
        try:
            if attribute_conversion(event["visitor"], at=at) is not None:
                converted += 1
        except Exception:
            # The purchase is stored; a cache outage must not fail the page or the ingest.
            logger.exception("Could not attribute a purchase to a click.")
    return converted
