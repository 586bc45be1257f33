"""OpenAPI descriptions of the API views, for drf-spectacular (``scripts/openapi``).

Imported by ``aigc_django.api.urls`` only when ``drf_spectacular`` is in ``INSTALLED_APPS``;
the app does not depend on drf-spectacular. The views parse their bodies by hand (no DRF
serializers), so each operation is described here as JSON objects with a summary; docs/api.md
and docs/feedback.md have every field and answer.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import OpenApiViewExtension
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework.parsers import JSONParser


def _json(description: str) -> OpenApiResponse:
    return OpenApiResponse(response=OpenApiTypes.OBJECT, description=description)


ERRORS = {
    400: _json("Not JSON, or invalid events: nothing was stored."),
    401: _json("A Token header whose secret is not one of AIGC['API']['TOKENS']."),
    403: _json("The CSRF check failed."),
    413: _json("Too many bytes or events."),
    429: _json("Throttled (AIGC['API']['INGEST_RATE'])."),
}


class EventIngestSchema(OpenApiViewExtension):
    target_class = "aigc_django.api.views.EventIngestView"

    def view_replacement(self) -> Any:
        class Described(self.target_class):  # type: ignore[name-defined]
            parser_classes = [JSONParser]  # the bodies are JSON (read by the views themselves)

            @extend_schema(
                operation_id="aigc_events_create",
                summary="Ingest a batch of events",
                description=(
                    'A JSON list of events, or {"events": [...]}. Browser calls use the '
                    "visitor cookie and the X-CSRFToken header; server calls send "
                    "Authorization: Token <secret> and name each event's visitor. "
                    "All or nothing."
                ),
                request=OpenApiTypes.ANY,
                responses={
                    202: _json('{"accepted": n}: stored or buffered (0 when not tracked).'),
                    **ERRORS,
                    503: _json("The database refused the write; try again."),
                },
                auth=[],
            )
            def post(self, request: Any) -> Any:
                return super().post(request)

        return Described


class MyDataSchema(OpenApiViewExtension):
    target_class = "aigc_django.api.views.MyDataView"

    def view_replacement(self) -> Any:
        class Described(self.target_class):  # type: ignore[name-defined]
            parser_classes = [JSONParser]  # the bodies are JSON (read by the views themselves)

            @extend_schema(
                operation_id="aigc_me_retrieve",
                summary="Export the calling browser's data",
                description="The visitor named by the signed cookie: record, profile, events.",
                responses={
                    200: _json("The export (a my-data.json attachment)."),
                    404: _json("No data is stored for this browser."),
                },
                auth=[],
            )
            def get(self, request: Any) -> Any:
                return super().get(request)

            @extend_schema(
                operation_id="aigc_me_destroy",
                summary="Erase the calling browser's data",
                description="Erases the visitor, merged visitors, events and profiles; "
                "deletes the cookie. CSRF applies.",
                responses={
                    200: _json('{"erased": {"visitors": n, "events": n}}'),
                    403: _json("The CSRF check failed."),
                },
                auth=[],
            )
            def delete(self, request: Any) -> Any:
                return super().delete(request)

        return Described


class FeedbackSchema(OpenApiViewExtension):
    target_class = "aigc_django.api.feedback.FeedbackView"

    def view_replacement(self) -> Any:
        class Described(self.target_class):  # type: ignore[name-defined]
            parser_classes = [JSONParser]  # the bodies are JSON (read by the views themselves)

            @extend_schema(
                operation_id="aigc_feedback_create",
                summary="Report impressions and clicks",
                description=(
                    '{"impressions": [variant ids], "clicks": [click tokens]}, JSON in any '
                    "content type (sendBeacon). The Origin or Referer must be this site."
                ),
                request=OpenApiTypes.OBJECT,
                responses={
                    202: _json('{"impressions": n, "ignored": n, "clicks": n}'),
                    400: _json("Not JSON, unknown keys, bad ids or tokens: nothing counted."),
                    403: _json("Not from a page of this site."),
                    413: _json("Over 8 KiB, more than 100 impressions or 10 clicks."),
                    429: _json("Throttled."),
                },
                auth=[],
            )
            def post(self, request: Any) -> Any:
                return super().post(request)

        return Described
