"""The signed click redirect, ``GET /aigc/r/<token>/``."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest, HttpResponseRedirect
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe

from aigc_django.delivery.clicks import read_click, record_click
from aigc_django.tracking.track import track
from aigc_django.tracking.visitors import visitor_id_for


@never_cache
@require_safe
def click_redirect(request: HttpRequest, token: str) -> HttpResponse:
    """Count a click on a variant and redirect (302) to the target the token signs.

    A tampered, foreign or unsafe token answers 400 and redirects nowhere. Only a GET of a
    visitor who may be tracked counts (the same visitors whose impressions count): the
    variant's click, the ``click`` event through ``track()`` (properties ``slot`` and
    ``variant``) and the last click kept for conversions. ``HEAD`` (link checkers,
    prefetchers), bots and untracked visitors are redirected without counting. The
    tracking script reports clicks by beacon and then skips this redirect, so a click is
    counted here or there, never both.
    """
    click = read_click(token)
    if click is None:
        return HttpResponseBadRequest("Invalid click link.", content_type="text/plain")
    if request.method == "GET":
        counted = record_click(click, visitor_id=visitor_id_for(request))
        if counted:
            track(
                request,
                "click",
                properties={"slot": click.slot_key, "variant": click.variant_id},
            )
    response = HttpResponseRedirect(click.target)
    response["X-Robots-Tag"] = "noindex, nofollow"
    return response
