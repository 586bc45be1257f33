"""Endpoints of the tracking stage: event ingestion and a visitor's own data."""

from __future__ import annotations

import hmac
import json
from typing import Any

from django.core.exceptions import RequestDataTooBig
from django.db import DatabaseError
from django.middleware.csrf import CsrfViewMiddleware
from rest_framework import status
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from aigc_django.api.throttling import IngestAddressThrottle, IngestRateThrottle
from aigc_django.conf import aigc_settings
from aigc_django.exceptions import InvalidEvent
from aigc_django.tracking import ingest, privacy
from aigc_django.tracking.events import clean_event
from aigc_django.tracking.visitors import (
    delete_visitor_cookie,
    read_visitor_cookie,
    visitor_id_for,
)


def _error(code: int, message: str, **extra: Any) -> Response:
    return Response({"error": message, **extra}, status=code)


def _token(request: Request) -> str | None:
    """The configured secret this request presents, if any."""
    header = request.headers.get("Authorization", "")
    scheme, _, secret = header.partition(" ")
    if scheme.lower() != "token" or not secret:
        return None
    for token in aigc_settings.API["TOKENS"]:
        if hmac.compare_digest(secret.strip().encode(), token.encode()):
            return token
    return None


def _csrf_failure(request: Request) -> str | None:
    check = CsrfViewMiddleware(lambda r: None)  # type: ignore[arg-type, return-value]
    check.process_request(request._request)
    return check.process_view(request._request, None, (), {}) and "CSRF check failed."


class BrowserOrTokenView(APIView):
    """Views that serve the visitor's own browser (cookie + CSRF) or a server (token)."""

    authentication_classes: list = []
    permission_classes: list = []
    # JSON only: a browser opening /aigc/api/me/ downloads the data, not an HTML page.
    renderer_classes = [JSONRenderer]

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        request.aigc_token = _token(request)
        super().initial(request, *args, **kwargs)


class EventIngestView(BrowserOrTokenView):
    """``POST /aigc/api/events/``: a JSON batch of events, stored all or nothing.

    Body: a list of events, or ``{"events": [...]}``. Each event has ``kind`` (required),
    ``item``, ``category``, ``value``, ``properties`` and ``occurred_at``; server-to-server
    calls (``Authorization: Token <secret>``) also name the ``visitor``.

    * 202 ``{"accepted": n}``: stored (n is 0 when the visitor is not tracked: DNT, GPC,
      no consent, a bot).
    * 400 ``{"error", "errors": [{"index", "field", "message"}]}``: nothing stored.
    * 401 a wrong token; 403 a failed CSRF check; 413 too many events or bytes; 429 throttled.
    """

    throttle_classes = [IngestRateThrottle, IngestAddressThrottle]

    def post(self, request: Request) -> Response:
        limits = aigc_settings.API
        max_bytes = limits["MAX_REQUEST_BYTES"]
        try:
            declared = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            declared = 0
        if declared > max_bytes:
            return _error(413, f"The request is larger than {max_bytes} bytes.")
        try:
            body = request.body
        except RequestDataTooBig:
            return _error(413, f"The request is larger than {max_bytes} bytes.")
        if len(body) > max_bytes:
            return _error(413, f"The request is larger than {max_bytes} bytes.")

        # Other schemes (the Basic auth of a password-protected staging site) are not ours.
        scheme = request.headers.get("Authorization", "").partition(" ")[0].lower()
        if scheme == "token" and request.aigc_token is None:
            return _error(401, "The token is not valid.")
        if request.aigc_token is None and (reason := _csrf_failure(request)):
            return _error(403, reason)

        try:
            payload = json.loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
            return _error(400, f"The body is not valid JSON: {exc}.")
        if isinstance(payload, dict) and set(payload) == {"events"}:
            payload = payload["events"]
        if not isinstance(payload, list):
            return _error(400, 'The body must be a JSON list of events or {"events": [...]}.')
        if len(payload) > limits["MAX_EVENTS_PER_BATCH"]:
            return _error(
                413,
                f"The batch has {len(payload)} events; the limit is "
                f"{limits['MAX_EVENTS_PER_BATCH']}.",
            )

        server = request.aigc_token is not None
        visitor_id = None if server else visitor_id_for(request._request)
        if not server and visitor_id is None:
            # Validate anyway, so a broken tracking script is noticed even under DNT.
            visitor_id = "00000000-0000-0000-0000-000000000000"
            tracked = False
        else:
            tracked = True
        events, errors = [], []
        for index, raw in enumerate(payload):
            try:
                events.append(clean_event(raw, visitor_id=visitor_id, allow_visitor_field=server))
            except InvalidEvent as exc:
                errors.append({"index": index, "field": exc.field, "message": exc.message})
        if errors:
            return Response(
                {"error": "The batch has invalid events; none was stored.", "errors": errors},
                status=status.HTTP_400_BAD_REQUEST,
            )
        if not tracked:
            return Response({"accepted": 0}, status=status.HTTP_202_ACCEPTED)
        try:
            ingest.record(events)
        except DatabaseError:
            return _error(503, "Events could not be stored; try again.")
        return Response({"accepted": len(events)}, status=status.HTTP_202_ACCEPTED)


class MyDataView(BrowserOrTokenView):
    """The calling browser's own data, named by its signed visitor cookie.

    ``GET /aigc/api/me/`` exports it as JSON (404 when nothing is stored);
    ``DELETE /aigc/api/me/`` erases it and drops the cookie (CSRF-checked). Both work under
    Do-Not-Track and after consent is withdrawn.
    """

    def get(self, request: Request) -> Response:
        visitor_id = read_visitor_cookie(request._request)
        data = privacy.export_visitor(visitor_id) if visitor_id else None
        if data is None:
            return _error(404, "No data is stored for this browser.")
        response = Response(data)
        response["Content-Disposition"] = 'attachment; filename="my-data.json"'
        response["Cache-Control"] = "private, no-store"
        return response

    def delete(self, request: Request) -> Response:
        if reason := _csrf_failure(request):
            return _error(403, reason)
        visitor_id = read_visitor_cookie(request._request)
        erased = privacy.erase_visitor(visitor_id) if visitor_id else {"visitors": 0, "events": 0}
        response = Response({"erased": erased})
        delete_visitor_cookie(response)
        # Stop the middleware from handing the browser a new cookie on this response.
        request._request.aigc_tracking = False
        return response
