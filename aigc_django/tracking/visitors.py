"""Who the visitor is, and whether they may be tracked at all."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable
from functools import lru_cache
from urllib.parse import urlparse

from django.core.exceptions import DisallowedHost
from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.http.request import split_domain_port

from aigc_django.conf import aigc_settings
from aigc_django.models.tracking import Event, Visitor

COOKIE_SALT = "aigc_django.visitor"
YES = frozenset({"1", "yes", "true", "granted", "accept", "accepted"})
NO = frozenset({"0", "no", "false", "denied", "reject", "rejected"})


@lru_cache(maxsize=8)
def _bot_pattern(patterns: tuple[str, ...]) -> re.Pattern[str]:
    return re.compile("|".join(f"(?:{p})" for p in patterns), re.IGNORECASE)


def is_bot(request: HttpRequest) -> bool:
    user_agent = request.headers.get("User-Agent", "").strip()
    if not user_agent:
        return True
    patterns = aigc_settings.BOT_USER_AGENTS
    patterns = (patterns,) if isinstance(patterns, str) else tuple(patterns)
    return bool(patterns) and bool(_bot_pattern(patterns).search(user_agent))


def device_class(user_agent: str) -> str:
    """'mobile', 'tablet' or 'desktop' from a User-Agent header."""
    ua = user_agent.lower()
    if "ipad" in ua or "tablet" in ua or ("android" in ua and "mobile" not in ua):
        return "tablet"
    if "mobi" in ua or "iphone" in ua or "android" in ua:
        return "mobile"
    return "desktop"


def request_context(request: HttpRequest) -> dict[str, str]:
    """The device class and, when the visit came from another site, the referring host
    (never the full URL: it may carry a search or a person's data)."""
    context = {"device": device_class(request.headers.get("User-Agent", ""))}
    referrer = urlparse(request.headers.get("Referer", "")).hostname or ""
    try:
        own_host = split_domain_port(request.get_host())[0]
    except DisallowedHost:
        own_host = ""
    if referrer and referrer != own_host:
        context["referrer"] = referrer[:100]
    return context


def consent_given(request: HttpRequest) -> bool | None:
    """The visitor's answer: True, False, or None when they have not said."""
    check = aigc_settings.imported("CONSENT", "CHECK")
    if check is not None:
        answer = check(request)
        if answer is not None:
            return bool(answer)
    raw = request.COOKIES.get(aigc_settings.CONSENT["COOKIE"], "").strip().lower()
    if raw in YES:
        return True
    if raw in NO:
        return False
    return None


def may_track(request: HttpRequest) -> bool:
    """Whether this request may carry a visitor cookie and record events."""
    if aigc_settings.HONOR_DO_NOT_TRACK and request.headers.get("DNT") == "1":
        return False
    if aigc_settings.HONOR_GLOBAL_PRIVACY_CONTROL and request.headers.get("Sec-GPC") == "1":
        return False
    if is_bot(request):
        return False
    consent = consent_given(request)
    if aigc_settings.CONSENT["MODE"] == "required":
        return consent is True
    return consent is not False


def read_visitor_cookie(request: HttpRequest) -> uuid.UUID | None:
    raw = request.get_signed_cookie(
        aigc_settings.VISITOR_COOKIE["NAME"], default=None, salt=COOKIE_SALT
    )
    if not raw:
        return None
    try:
        return uuid.UUID(raw)
    except ValueError:
        return None


def set_visitor_cookie(response: HttpResponse, visitor_id: uuid.UUID) -> None:
    cookie = aigc_settings.VISITOR_COOKIE
    response.set_signed_cookie(
        cookie["NAME"],
        str(visitor_id),
        salt=COOKIE_SALT,
        max_age=cookie["AGE"],
        secure=cookie["SECURE"],
        samesite=cookie["SAMESITE"],
        domain=cookie["DOMAIN"],
        httponly=True,
    )


def delete_visitor_cookie(response: HttpResponse) -> None:
    cookie = aigc_settings.VISITOR_COOKIE
    response.delete_cookie(cookie["NAME"], domain=cookie["DOMAIN"], samesite=cookie["SAMESITE"])


def visitor_id_for(request: HttpRequest) -> uuid.UUID | None:
    """The id of the visitor making this request, or None when they are not tracked."""
    if hasattr(request, "aigc_visitor_id"):
        return request.aigc_visitor_id
    # Without VisitorMiddleware: only visitors who already carry a cookie are known.
    return read_visitor_cookie(request) if may_track(request) else None


def get_visitor(visitor_id: uuid.UUID | None) -> Visitor | None:
    """The Visitor row for an id, created on first use, following merges."""
    if visitor_id is None:
        return None
    visitor, _ = Visitor.objects.get_or_create(id=visitor_id)
    while visitor.merged_into_id is not None:
        visitor = visitor.merged_into
    return visitor


def lock_visitors(
    ids: Iterable[uuid.UUID], create: uuid.UUID | None = None
) -> dict[uuid.UUID, Visitor]:
    """Lock the visitor rows with these ids until the transaction ends; return {id: Visitor}
    for those that exist.

    They are locked one by one in id order, the order in which ingest locks the visitors of a
    batch, so a login merge, an erasure and a batch that name the same visitors never wait
    for each other in a cycle. ``create`` is inserted when missing, in its place in that
    order (a new row is locked as well).
    """
    locked = {}
    for vid in sorted(set(ids) | ({create} if create is not None else set())):
        if vid == create:
            Visitor.objects.bulk_create([Visitor(id=vid)], ignore_conflicts=True)
            locked[vid], _ = Visitor.objects.select_for_update().get_or_create(id=vid)
        elif visitor := Visitor.objects.select_for_update().filter(id=vid).first():
            locked[vid] = visitor  # (unless an erasure took it meanwhile)
    return locked


def merge_into_user(visitor_id: uuid.UUID, user) -> uuid.UUID:
    """Attach an anonymous visitor to ``user``; return the id the browser should now carry.

    A user who already has a visitor keeps it: the anonymous visitor's events move there and
    the anonymous row remembers where it went (events still in a buffer follow it). A
    visitor that belongs to another account is never merged.
    """
    visitor_id = uuid.UUID(str(visitor_id))
    with transaction.atomic():
        user_visitors = Visitor.objects.filter(user=user, merged_into__isnull=True)
        locked = lock_visitors(user_visitors.values_list("id", flat=True), create=visitor_id)
        anonymous = locked[visitor_id]
        existing = min(
            (v for v in locked.values() if v.user_id == user.pk and v.merged_into_id is None),
            key=lambda v: v.first_seen,
            default=None,
        )
        if anonymous.user_id not in (None, user.pk) or anonymous.merged_into_id is not None:
            # A shared browser that still carries another account's visitor: its history
            # stays theirs, and this user continues with their own visitor (or a new one).
            if existing is not None:
                return existing.pk
            return Visitor.objects.create(user=user).pk
        if existing is None or existing.pk == anonymous.pk:
            if anonymous.user_id != user.pk:
                anonymous.user = user
                anonymous.save(update_fields=["user"])
            return anonymous.pk
        Event.objects.filter(visitor=anonymous).update(visitor=existing)
        anonymous.merged_into = existing
        anonymous.save(update_fields=["merged_into"])
        existing.first_seen = min(existing.first_seen, anonymous.first_seen)
        existing.last_seen = max(existing.last_seen, anonymous.last_seen)
        existing.save(update_fields=["first_seen", "last_seen"])
        return existing.pk
