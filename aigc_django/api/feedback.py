"""``POST /aigc/api/feedback/``: impressions and clicks that the tracking script reports.

The script sends with ``navigator.sendBeacon``, which cannot set headers, so the usual
CSRF header cannot be sent. Instead the request must come from this site: its ``Origin``
header (or, when a browser leaves it out, its ``Referer``) must name this host or one of
``CSRF_TRUSTED_ORIGINS``. A foreign page cannot make a visitor's browser report here, and
whoever sends a forged ``Origin`` from their own client gains nothing a direct request
would not give them: the endpoint only raises anonymous counters, it is throttled (per
visitor and per address, the ingest endpoint's rates, in their own buckets) and
size-limited, and a click must carry the signed token of a real click link.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.utils.http import is_same_domain
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from aigc_django.api.throttling import IngestAddressThrottle, IngestRateThrottle
from aigc_django.delivery import counters
from aigc_django.delivery.clicks import read_click, record_click
from aigc_django.models import Variant
from aigc_django.tracking.track import track
from aigc_django.tracking.visitors import visitor_id_for

# A page has a handful of slots: a beacon is a few hundred bytes.
MAX_FEEDBACK_BYTES = 8 * 1024
MAX_IMPRESSIONS = 100
MAX_CLICKS = 10


class FeedbackRateThrottle(IngestRateThrottle):
    """The ingest endpoint's per-visitor rate, counted apart from it."""

    scope = "aigc_feedback"


class FeedbackAddressThrottle(IngestAddressThrottle):
    """The ingest endpoint's per-address rate, counted apart from it."""

    scope = "aigc_feedback_address"


def _error(code: int, message: str) -> Response:
    return Response({"error": message}, status=code)


def _same_origin(request: Request) -> bool:
    """Whether the request's Origin (else Referer) is this site or a trusted origin."""
    source = request.headers.get("Origin") or request.headers.get("Referer")
    if not source or source == "null":
        return False
    parts = urlsplit(source)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return False
    origin = f"{parts.scheme}://{parts.netloc}"
    if parts.scheme == request.scheme and parts.netloc == request._request.get_host():
        return True
    for trusted in settings.CSRF_TRUSTED_ORIGINS:
        trusted_parts = urlsplit(trusted)
        if trusted == origin or (
            trusted_parts.scheme == parts.scheme
            and trusted_parts.netloc.startswith("*.")
            and is_same_domain(parts.netloc, trusted_parts.netloc[1:])
        ):
            return True
    return False


# The largest primary key a database stores (a signed 64-bit integer): a larger "id" is
# not an id, and SQLite cannot even bind it in a query.
MAX_ID = 2**63 - 1


def _ids(value: Any) -> list[int] | None:
    if not isinstance(value, list):
        return None
    if not all(
        isinstance(item, int) and not isinstance(item, bool) and 0 < item <= MAX_ID
        for item in value
    ):
        return None
    return value


class FeedbackView(APIView):
    """Count impressions and clicks reported by the tracking script.

    Body (JSON, any content type, so that ``sendBeacon`` can send a plain string)::

        {"impressions": [variant ids], "clicks": [click tokens]}

    Both keys are optional. ``impressions``: up to 100 positive ids, one per variant the
    script put on the page (client mode only: in server mode the template tag counts
    them). Ids of variants that do not exist or are not approved are ignored and reported
    as ``ignored``. ``clicks``: up to 10 tokens of signed click links (the ``<token>`` of
    ``/aigc/r/<token>/``), each counted once; a click sent here is not followed through the
    redirect, so it is never counted twice.

    * 202 ``{"impressions": n, "ignored": n, "clicks": n}``; bots and visitors who may
      not be tracked (Do-Not-Track, GPC, no consent) count nothing.
    * 400 bad JSON, bad fields or a bad click token (nothing counted); 403 not from this
      site; 413 over 8 KiB or too many items; 429 throttled.
    """

    authentication_classes: list = []
    permission_classes: list = []
    renderer_classes = [JSONRenderer]
    throttle_classes = [FeedbackRateThrottle, FeedbackAddressThrottle]

    def post(self, request: Request) -> Response:
        too_big = f"The request is larger than {MAX_FEEDBACK_BYTES} bytes."
        try:
            declared = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            declared = 0
        if declared > MAX_FEEDBACK_BYTES:
            return _error(413, too_big)
        try:
            body = request.body
        except RequestDataTooBig:
            return _error(413, too_big)
        if len(body) > MAX_FEEDBACK_BYTES:
            return _error(413, too_big)
        if not _same_origin(request):
            return _error(403, "The request must come from a page of this site.")

        try:
            payload = json.loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
            return _error(400, f"The body is not valid JSON: {exc}.")
        if not isinstance(payload, dict) or not set(payload) <= {"impressions", "clicks"}:
            return _error(400, 'The body must be {"impressions": [...], "clicks": [...]}.')
        impressions = _ids(payload.get("impressions", []))
        if impressions is None:
            return _error(400, "impressions must be a list of variant ids (positive integers).")
        tokens = payload.get("clicks", [])
        if not isinstance(tokens, list) or not all(isinstance(t, str) for t in tokens):
            return _error(400, "clicks must be a list of click tokens.")
        if len(impressions) > MAX_IMPRESSIONS or len(tokens) > MAX_CLICKS:
            return _error(
                413, f"At most {MAX_IMPRESSIONS} impressions and {MAX_CLICKS} clicks per request."
            )
        clicks = [read_click(token) for token in tokens]
        if any(click is None for click in clicks):
            return _error(400, "A click token is not valid.")

        visitor_id = visitor_id_for(request._request)
        if visitor_id is None:
            # Bots and visitors who may not be tracked count nothing, as on the server.
            return Response({"impressions": 0, "ignored": len(impressions), "clicks": 0}, 202)
        known: set[int] = set()
        if impressions:
            known = set(
                Variant.objects.filter(
                    pk__in=set(impressions), status=Variant.Status.APPROVED
                ).values_list("pk", flat=True)
            )
        counted = [variant_id for variant_id in impressions if variant_id in known]
        counters.record_impressions(counted)
        for click in clicks:
            assert click is not None
            record_click(click, visitor_id=visitor_id)
            track(
                request._request,
                "click",
                properties={"slot": click.slot_key, "variant": click.variant_id},
            )
        return Response(
            {
                "impressions": len(counted),
                "ignored": len(impressions) - len(counted),
                "clicks": len(clicks),
            },
            status=202,
        )
