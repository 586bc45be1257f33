"""``{% load aigc %}``: generated content in templates.

* ``{% aigc_banner "home-hero" %}``: the visitor's banner, a ``<picture>`` (WebP source,
  JPEG/PNG ``<img>`` with ``srcset``, width, height and alt text) in a signed click link
  carrying ``data-aigc-slot`` and ``data-aigc-variant``. Options: ``size="1200x628"`` (the
  slot's first size by default), ``loading="eager"`` (``"lazy"`` by default; use eager for
  a banner above the fold), ``class="..."`` (on the link), ``img_class="..."`` (on the
  ``<img>``), ``link="/sale/"`` (instead of the slot's link), ``client=True|False``
  (instead of ``AIGC["DELIVERY"]["CLIENT_MODE"]``).
* ``{% aigc_copy "cart-nudge" "headline" %}``: one copy field, escaped. Options: ``client``.
* ``{% aigc_slot "home-hero" as v %}``: puts the content in ``v`` for custom markup (None when
  there is nothing to show): ``v.id``, ``v.copy.headline`` (also ``v.headline``),
  ``v.picture`` (``src``, ``srcset``, ``sources``, ``width``, ``height``, ``html``),
  ``v.link``, ``v.alt_text``, ``v.segment``, ``v.is_fallback``, ``v.is_preview``.
  Option: ``size``.
* ``{% aigc_tracking_script %}``: the tracking script and its configuration; put it once in
  the base template.

A tag never raises into the page and never runs a model: an error or a miss renders nothing,
or with ``DEBUG`` on an HTML comment ``<!-- aigc: why -->``. Each rendered variant counts one
impression per request (not for staff previews, visitors who are not tracked, or in client
mode, where the tracking script counts what it shows).
"""

from __future__ import annotations

import functools
import logging
from typing import Any

from django import template
from django.conf import settings
from django.template.base import FilterExpression, Parser, Token
from django.template.loader import render_to_string
from django.urls import get_script_prefix, get_urlconf, reverse
from django.utils.safestring import SafeString, mark_safe

from aigc_django.conf import aigc_settings
from aigc_django.delivery import render, selection
from aigc_django.delivery.render import RenderError
from aigc_django.delivery.selection import Choice

logger = logging.getLogger("aigc_django.delivery")
register = template.Library()

TRACKING_TEMPLATE = "aigc_django/tracking_script.html"


class Miss(Exception):
    """Nothing to show, for an expected reason (the DEBUG comment says which)."""


class AnonymousRequest:
    """Stands in for the request when a template renders without one (e.g. an email)."""

    GET: dict[str, str] = {}
    user = None
    aigc_tracking = False
    aigc_visitor_id = None


def _request(context: template.Context) -> Any:
    request = getattr(context, "request", None) or context.get("request")
    if request is not None:
        return request
    # Kept for the whole render, so that two tags of one slot still agree on the variant.
    base = context.render_context.dicts[0]
    return base.setdefault("aigc_anonymous_request", AnonymousRequest())


def _miss(reason: str) -> SafeString | str:
    return render.comment(reason) if settings.DEBUG else ""


def _with_reason(reason: str, html: str) -> SafeString | str:
    if reason and settings.DEBUG:
        return mark_safe(render.comment(reason) + html)
    return html


def _slot_key(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise RenderError(f"the slot key must be a non-empty string, not {value!r}")
    return value.strip()


def _client_mode(client: Any) -> bool:
    if client is None or client == "":
        return bool(aigc_settings.DELIVERY["CLIENT_MODE"])
    return bool(client)


def _previewing(request: Any, slot_key: str) -> bool:
    """Whether this request is a staff preview of a variant of ``slot_key`` (rendered on the
    server even in client mode, so the previewer sees it at once)."""
    if selection.preview_id(request) is None:
        return False
    preview = selection.previewed_variant(request)
    return preview is not None and preview["slot"] == slot_key


def _fallback_of(choice: Choice) -> Choice | None:
    """The slot's fallback content as a choice: what shows when the chain reached it, or
    when the chosen variant cannot render (no banner at that size, no such copy field)."""
    content = choice.fallback or (choice.slot or {}).get("fallback")
    if not content:
        return None
    return Choice(choice.slot_key, fallback=content, slot=choice.slot)


def render_banner(
    context: template.Context,
    slot_key: Any,
    *,
    size: Any = None,
    loading: Any = "lazy",
    css_class: Any = "",
    img_class: Any = "",
    link: Any = None,
    client: Any = None,
) -> SafeString | str:
    slot_key = _slot_key(slot_key)
    label = render.parse_size(size)
    if loading not in render.LOADING:
        raise RenderError(f'loading={loading!r}: use "lazy" or "eager"')
    request = _request(context)
    if _client_mode(client) and not _previewing(request, slot_key):
        return render.placeholder_html(slot_key, size=label, css_class=str(css_class or ""))
    choice = selection.choose(request, slot_key)
    options = {"size": label, "loading": loading, "css_class": str(css_class or "")}
    options["img_class"] = str(img_class or "")
    reasons = [choice.reason] if choice.reason else []
    if choice.variant is not None:
        try:
            html = render.banner_for(choice, link, **options)
        except RenderError as exc:
            reasons.append(str(exc))
        else:
            selection.record_impression(request, choice)
            return _with_reason("; ".join(reasons), html)
    fallback = _fallback_of(choice)
    if fallback is not None:
        try:
            html = render.fallback_banner_html(fallback, **options)
        except RenderError as exc:
            reasons.append(str(exc))
        else:
            return _with_reason("; ".join(reasons), html)
    raise Miss("; ".join(reasons) or f"nothing to show in {slot_key!r}")


def render_copy(
    context: template.Context, slot_key: Any, field_name: Any, *, client: Any = None
) -> SafeString | str:
    slot_key = _slot_key(slot_key)
    if not isinstance(field_name, str) or not field_name:
        raise RenderError(f"the copy field must be a non-empty string, not {field_name!r}")
    request = _request(context)
    if _client_mode(client) and not _previewing(request, slot_key):
        return render.placeholder_html(slot_key, field_name=field_name)
    choice = selection.choose(request, slot_key)
    reasons = [choice.reason] if choice.reason else []
    if choice.variant is not None:
        try:
            html = render.copy_html(choice, field_name)
        except RenderError as exc:
            reasons.append(str(exc))
        else:
            selection.record_impression(request, choice)
            return _with_reason("; ".join(reasons), html)
    fallback = _fallback_of(choice)
    if fallback is not None:
        try:
            html = render.copy_html(fallback, field_name)
        except RenderError as exc:
            reasons.append(str(exc))
        else:
            return _with_reason("; ".join(reasons), html)
    raise Miss("; ".join(reasons) or f"nothing to show in {slot_key!r}")


def render_slot(
    context: template.Context, slot_key: Any, *, target: str, size: Any = None
) -> SafeString | str:
    context[target] = None
    slot_key = _slot_key(slot_key)
    label = render.parse_size(size)
    request = _request(context)
    choice = selection.choose(request, slot_key)
    href = render.click_href(choice, None) if choice.variant is not None else None
    content = render.slot_content(choice, label, href)
    context[target] = content
    if content is None:
        raise Miss(choice.reason or f"nothing to show in {slot_key!r}")
    if choice.variant is not None:
        selection.record_impression(request, choice)
    return _with_reason(choice.reason, "")


def tracking_config() -> dict[str, Any]:
    """The configuration the tracking script reads (``json_script`` id ``aigc-config``)."""
    slot_url = reverse("aigc:aigc-slot", kwargs={"key": "KEY"})
    return {
        "endpoint": slot_url[: -len("KEY/")],
        "feedback": reverse("aigc:aigc-feedback"),
        "client_mode": bool(aigc_settings.DELIVERY["CLIENT_MODE"]),
    }


@functools.lru_cache(maxsize=8)
def _tracking_script_cached(prefix: str, urlconf: Any, client_mode: bool) -> str:
    return render_to_string(TRACKING_TEMPLATE, {"config": tracking_config()})


def render_tracking_script(context: template.Context) -> SafeString | str:
    if settings.DEBUG:  # templates may change while the development server runs
        html = render_to_string(TRACKING_TEMPLATE, {"config": tracking_config()})
    else:
        html = _tracking_script_cached(
            get_script_prefix(), get_urlconf(), bool(aigc_settings.DELIVERY["CLIENT_MODE"])
        )
    return mark_safe(html)


# Parsing: tolerant, so that a mistake in a tag's arguments becomes a comment, not an error
# page. --------------------------------------------------------------------------------------

RENDERERS = {
    "aigc_banner": (render_banner, {"size", "loading", "class", "img_class", "link", "client"}),
    "aigc_copy": (render_copy, {"client"}),
    "aigc_slot": (render_slot, {"size"}),
    "aigc_tracking_script": (render_tracking_script, set()),
}
POSITIONAL = {"aigc_banner": 1, "aigc_copy": 2, "aigc_slot": 1, "aigc_tracking_script": 0}


class DeliveryNode(template.Node):
    """One of the tags; renders through :data:`RENDERERS`, catching every exception."""

    def __init__(
        self,
        tag_name: str,
        args: list[FilterExpression],
        kwargs: dict[str, FilterExpression],
        target: str | None = None,
        error: str | None = None,
    ) -> None:
        self.tag_name = tag_name
        self.args = args
        self.kwargs = kwargs
        self.target = target
        self.error = error

    def render(self, context: template.Context) -> SafeString | str:
        try:
            if self.error:
                raise RenderError(self.error)
            function, _ = RENDERERS[self.tag_name]
            args = [arg.resolve(context) for arg in self.args]
            kwargs = {
                ("css_class" if name == "class" else name): value.resolve(context)
                for name, value in self.kwargs.items()
            }
            if self.target is not None:
                kwargs["target"] = self.target
            return function(context, *args, **kwargs)
        except Miss as exc:
            return _miss(str(exc))
        except RenderError as exc:
            logger.warning("{%% %s %%}: %s", self.tag_name, exc)
            return _miss(f"{self.tag_name}: {exc}")
        except Exception as exc:
            logger.exception("{%% %s %%} failed", self.tag_name)
            return _miss(f"{self.tag_name} failed: {type(exc).__name__}: {exc}")


def parse_delivery_tag(parser: Parser, token: Token) -> DeliveryNode:
    """Parse ``{% tag arg... name=value... [as var] %}``; bad syntax becomes an error node."""
    bits = token.split_contents()
    tag_name, bits = bits[0], bits[1:]
    target = None
    try:
        if tag_name == "aigc_slot":
            if len(bits) < 2 or bits[-2] != "as":
                raise template.TemplateSyntaxError('use {% aigc_slot "slot-key" as name %}')
            target = bits[-1]
            bits = bits[:-2]
        _, allowed = RENDERERS[tag_name]
        args: list[FilterExpression] = []
        kwargs: dict[str, FilterExpression] = {}
        for bit in bits:
            name, equals, value = bit.partition("=")
            if equals and name.isidentifier():
                if name not in allowed:
                    raise template.TemplateSyntaxError(
                        f"unknown option {name}= (known: {', '.join(sorted(allowed)) or 'none'})"
                    )
                kwargs[name] = parser.compile_filter(value)
            elif kwargs:
                raise template.TemplateSyntaxError(f"{bit!r} comes after a name=value option")
            else:
                args.append(parser.compile_filter(bit))
        if len(args) != POSITIONAL[tag_name]:
            raise template.TemplateSyntaxError(
                f"takes {POSITIONAL[tag_name]} positional argument(s), got {len(args)}"
            )
    except template.TemplateSyntaxError as exc:
        logger.warning("{%% %s %%} in a template: %s", tag_name, exc)
        return DeliveryNode(tag_name, [], {}, target, error=str(exc))
    return DeliveryNode(tag_name, args, kwargs, target)


for _name in RENDERERS:
    register.tag(_name, parse_delivery_tag)
