"""The signed click redirect, ``GET /aigc/r/<token>/``."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest, HttpResponseRedirect
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe

from aigc_django.delivery.clicks import read_click, record_click
from aigc_django.tracking.track import track
from aigc_django.tracking.visitors import is_bot, visitor_id_for


@never_cache
@require_safe
def click_redirect(request: HttpRequest, token: str) -> HttpResponse:
    """Count a click on a variant and redirect (302) to the target the token signs.

    A tampered, foreign or unsafe token answers 400 and redirects nowhere. Only a GET from
    a browser counts: ``HEAD`` (link checkers, prefetchers) and bots are redirected without
    counting. The ``click`` event (properties ``slot`` and ``variant``) is recorded through
    ``track()``, so only for visitors who may be tracked; the variant's click counter is an
    anonymous aggregate and counts every non-bot click.
    """
    click = read_click(token)
    if click is None:
        return HttpResponseBadRequest("Invalid click link.", content_type="text/plain")
    if request.method == "GET" and not is_bot(request):
        visitor_id = visitor_id_for(request)
        record_click(click, visitor_id=visitor_id)
        track(
            request,
            "click",
            properties={"slot": click.slot_key, "variant": click.variant_id},
        )
    response = HttpResponseRedirect(click.target)
    response["X-Robots-Tag"] = "noindex, nofollow"
    return response
