"""``VisitorMiddleware``: a pseudonymous visitor per browser, in a signed first-party cookie."""

from __future__ import annotations

import uuid
from collections.abc import Callable

from django.http import HttpRequest, HttpResponse
from django.utils.functional import SimpleLazyObject

from aigc_django.tracking.visitors import (
    get_visitor,
    may_track,
    read_visitor_cookie,
    set_visitor_cookie,
)


class VisitorMiddleware:
    """Sets ``request.aigc_visitor_id``, ``request.aigc_visitor`` and ``request.aigc_tracking``.

    * ``aigc_tracking``: False for bots, Do-Not-Track, Global Privacy Control and visitors
      without consent (per ``AIGC["CONSENT"]``); such requests get no cookie and no events.
    * ``aigc_visitor_id``: the visitor's UUID (None when not tracking). No database query.
    * ``aigc_visitor``: the ``Visitor`` row, looked up (or created) only when first used.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        tracking = may_track(request)
        from_cookie = read_visitor_cookie(request) if tracking else None
        request.aigc_tracking = tracking
        if tracking and from_cookie is None:
            request.aigc_visitor_id = uuid.uuid4()
        else:
            request.aigc_visitor_id = from_cookie
        request.aigc_visitor = SimpleLazyObject(lambda: get_visitor(request.aigc_visitor_id))

        response = self.get_response(request)

        visitor_id = getattr(request, "aigc_visitor_id", None)
        # Only a new or changed id is written, so cached pages of returning visitors stay
        # free of Set-Cookie.
        if request.aigc_tracking and visitor_id is not None and visitor_id != from_cookie:
            set_visitor_cookie(response, visitor_id)
        return response
