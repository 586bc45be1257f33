"""``GET /aigc/api/slots/<key>/``: the visitor's content of a slot, for client mode and
headless storefronts.

JSON by default::

    {"slot": "home-hero", "kind": "banner", "variant": 12, "segment": "runners",
     "is_fallback": false, "copy": {"headline": "...", "body": "...", "cta": "..."},
     "alt_text": "...", "picture": {"size": "1200x628", "width": 1200, "height": 628,
     "src": "...", "srcset": "...", "sizes": "...", "sources": [{"type": "image/webp",
     "srcset": "..."}]}, "link": "/aigc/r/<signed token>/"}

``variant`` is null for fallback content (``is_fallback`` true) and for nothing at all
(``copy`` empty, ``picture`` and ``link`` null). ``?size=728x90`` picks a banner size (the
slot's first by default). ``?format=html`` answers the HTML fragment the template tags
render instead (``&field=headline`` for one copy field). An unknown slot is a 404 with
``{"error": ...}``.

The choice is the same as the tags make (segment, fallback chain, stickiness), but no
impression is counted here: the tracking script counts what it shows. Answers differ per
visitor, so they are ``Cache-Control: private, no-store`` and ``Vary: Cookie``.

A plain Django view rather than a DRF one: DRF reserves ``?format=`` for its renderers, and
this view is on the path of every client-mode page, where DRF's request wrapping costs time
for nothing (there is no input to parse, authenticate or throttle).
"""

from __future__ import annotations

import logging
from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils.cache import patch_vary_headers
from django.views.decorators.http import require_GET

from aigc_django.delivery import render, selection
from aigc_django.delivery.render import RenderError

logger = logging.getLogger("aigc_django.delivery")


def _private(response: HttpResponse) -> HttpResponse:
    response["Cache-Control"] = "private, no-store"
    patch_vary_headers(response, ["Cookie"])
    return response


def _error(status: int, message: str) -> HttpResponse:
    return _private(JsonResponse({"error": message}, status=status))


def payload(choice: selection.Choice, size: str | None, href: str | None) -> dict[str, Any]:
    """The JSON answer for a choice (see the module docstring)."""
    content = render.slot_content(choice, size, href)
    picture = None
    if content is not None and content["picture"]:
        picture = {k: v for k, v in content["picture"].items() if k != "html"}
        if "width" in picture:
            picture["sizes"] = render.sizes_attribute(picture["width"])
    return {
        "slot": choice.slot_key,
        "kind": (choice.slot or {}).get("kind", ""),
        "variant": content["id"] if content is not None else None,
        "segment": choice.segment or None,
        "is_fallback": bool(content is not None and content["is_fallback"]),
        "copy": dict(content["copy"]) if content is not None else {},
        "alt_text": content["alt_text"] if content is not None else "",
        "picture": picture,
        "link": content["link"] if content is not None else None,
    }


def fragment(choice: selection.Choice, size: str | None, href: str | None, field: str) -> str:
    """The HTML the tags would render for this choice ("" when there is nothing)."""
    if field:
        source = (
            choice
            if choice.variant is not None
            else selection.Choice(choice.slot_key, fallback=choice.fallback)
        )
        try:
            return render.copy_html(source, field)
        except RenderError:
            if choice.variant is None or not choice.fallback:
                return ""
            return render.copy_html(
                selection.Choice(choice.slot_key, fallback=choice.fallback), field
            )
    kind = (choice.slot or {}).get("kind")
    if choice.variant is not None:
        if kind == "banner" and choice.variant["pictures"]:
            return render.banner_html(choice, size=size, href=href)
        return render.copy_fragment(choice)
    if choice.fallback:
        if kind == "banner":
            try:
                return render.fallback_banner_html(choice, size=size)
            except RenderError:
                return ""
        return render.copy_fragment(choice)
    return ""


@require_GET
def slot_view(request: HttpRequest, key: str) -> HttpResponse:
    """The visitor's content of slot ``key`` as JSON or (``?format=html``) an HTML fragment."""
    try:
        size = render.parse_size(request.GET.get("size"))
    except RenderError as exc:
        return _error(400, str(exc))
    try:
        choice = selection.choose(request, key)
        if choice.slot is None:
            return _error(404, f"There is no slot {key!r}.")
        href = render.click_href(choice, None) if choice.variant is not None else None
        if request.GET.get("format") == "html":
            body = fragment(choice, size, href, request.GET.get("field", ""))
            response = HttpResponse(body, content_type="text/html; charset=utf-8")
        else:
            response = JsonResponse(payload(choice, size, href))
    except RenderError as exc:
        return _error(404, str(exc))
    except Exception:
        # Like the tags: a broken cache entry or rendition never turns into a 500 page.
        logger.exception("GET /aigc/api/slots/%s/ failed", key)
        return _error(503, "The slot's content is not available right now.")
    return _private(response)
