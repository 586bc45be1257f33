"""The HTML of delivered content: banners, copy, fallback content, client-mode placeholders.

Built with plain string formatting from the cached dicts (no template rendering: these run
several times on every page). Every value that comes from generated or edited content is
escaped here; generated copy is never marked safe.
"""

from __future__ import annotations

import functools
import logging
from typing import Any

from django.core.files.storage import default_storage
from django.urls import get_script_prefix, get_urlconf
from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

from aigc_django.delivery import clicks
from aigc_django.delivery.selection import Choice

logger = logging.getLogger("aigc_django.delivery")

COPY_FIELDS = ("headline", "body", "cta")
LOADING = ("lazy", "eager")


class RenderError(ValueError):
    """The tag cannot render what it was asked for (the message is the DEBUG comment)."""


def comment(reason: str) -> SafeString:
    """``<!-- aigc: reason -->``, with anything that could end the comment early defused."""
    text = str(reason).replace("--", "- -").replace("<", "&lt;").replace(">", "&gt;")
    return mark_safe(f"<!-- aigc: {text} -->")


def safe_url(value: Any) -> str | None:
    """A URL content may link or load: http(s) and site paths as they are, a storage name
    through the default storage; anything else (``javascript:``, ``data:``) is refused."""
    if not isinstance(value, str) or not value.strip():
        return None
    value = value.strip()
    if value.startswith(("https://", "http://", "/")) and not value.startswith("//"):
        return value
    if ":" in value or value.startswith("//"):
        return None
    return default_storage.url(value)


def parse_size(size: Any) -> str | None:
    """``"1200x628"`` (also ``"1200X628"``, ``(1200, 628)``) as the label renditions use."""
    if size in (None, ""):
        return None
    if isinstance(size, (list, tuple)) and len(size) == 2:
        width, height = size
    else:
        parts = str(size).lower().split("x")
        if len(parts) != 2:
            raise RenderError(f'size={size!r} is not WIDTHxHEIGHT, e.g. size="1200x628"')
        width, height = parts
    try:
        return f"{int(width)}x{int(height)}"
    except (TypeError, ValueError):
        raise RenderError(f'size={size!r} is not WIDTHxHEIGHT, e.g. size="1200x628"') from None


def picture_for(variant: dict[str, Any], size: str | None) -> dict[str, Any]:
    """The variant's picture at ``size`` (its first size when None); RenderError if none."""
    pictures = variant.get("pictures") or {}
    if not pictures:
        raise RenderError(f"variant #{variant['id']} has no banner image")
    if size is None:
        return next(iter(pictures.values()))
    if size not in pictures:
        raise RenderError(
            f"variant #{variant['id']} has no {size} banner (it has {', '.join(pictures)})"
        )
    return pictures[size]


def sizes_attribute(width: int) -> str:
    """The ``sizes`` of a banner shown at most ``width`` CSS pixels wide."""
    return f"(max-width: {width}px) 100vw, {width}px"


def picture_html(
    picture: dict[str, Any], alt: str, *, loading: str = "lazy", img_class: str = ""
) -> str:
    """``<picture>`` with a ``<source>`` per preferred format and an ``<img>`` fallback."""
    sizes = sizes_attribute(picture["width"])
    sources = "".join(
        f'<source type="{escape(source["type"])}" srcset="{escape(source["srcset"])}" '
        f'sizes="{sizes}">'
        for source in picture["sources"]
    )
    class_attribute = f' class="{escape(img_class)}"' if img_class else ""
    return (
        f"<picture>{sources}"
        f'<img src="{escape(picture["src"])}" srcset="{escape(picture["srcset"])}" '
        f'sizes="{sizes}" width="{int(picture["width"])}" height="{int(picture["height"])}" '
        f'alt="{escape(alt)}" loading="{loading}" decoding="async"{class_attribute}>'
        "</picture>"
    )


def banner_html(
    choice: Choice,
    *,
    size: str | None = None,
    href: str | None = None,
    loading: str = "lazy",
    css_class: str = "",
    img_class: str = "",
) -> SafeString:
    """A variant's banner: its ``<picture>`` in a link (``href``: the signed click URL)
    carrying ``data-aigc-slot`` and ``data-aigc-variant`` for the tracking script."""
    variant = choice.variant
    assert variant is not None
    picture = picture_for(variant, size)
    alt = variant.get("alt_text") or variant["copy"].get("headline", "")
    inner = picture_html(picture, alt, loading=loading, img_class=img_class)
    classes = " ".join(filter(None, ["aigc-banner", css_class, choice.preview and "aigc-preview"]))
    attributes = (
        f'class="{escape(classes)}" data-aigc-slot="{escape(choice.slot_key)}" '
        f'data-aigc-variant="{int(variant["id"])}"'
    )
    if href:
        html = f'<a href="{escape(href)}" {attributes}>{inner}</a>'
    else:
        html = f"<div {attributes}>{inner}</div>"
    if choice.preview:
        html = preview_label(variant) + html
    return mark_safe(html)


def banner_for(choice: Choice, link: Any = None, **options: Any) -> SafeString:
    """:func:`banner_html` with the signed click link, kept on the variant's cached dict.

    A banner's HTML depends only on the variant, the slot, the link and the tag's options,
    and a variant's dict lives as long as its cache version in this process, so each
    banner is built once per process and version rather than on every page. Previews are
    built every time.
    """
    if choice.preview:
        return banner_html(choice, href=click_href(choice, link), **options)
    variant = choice.variant
    assert variant is not None
    key = (choice.slot_key, link, get_script_prefix(), *sorted(options.items()))
    built = variant.get("_html")
    if built is None:
        built = variant["_html"] = {}
    html = built.get(key)
    if html is None:
        html = banner_html(choice, href=click_href(choice, link), **options)
        if len(built) < 32:  # a bound, against templates that vary options per request
            built[key] = html
    return html


def preview_label(variant: dict[str, Any]) -> str:
    """The mark staff see above a previewed banner."""
    return (
        '<p class="aigc-preview-label" role="note" style="margin:0;padding:2px 6px;'
        'background:#facc15;color:#111;font:12px/1.4 sans-serif">'
        f"Preview: variant #{int(variant['id'])} ({escape(variant.get('status', ''))}), "
        f"segment {escape(variant.get('segment', ''))}. Visitors do not see this mark.</p>"
    )


def copy_html(choice: Choice, field_name: str) -> SafeString:
    """One copy field of the choice (variant, else fallback content), escaped."""
    if choice.variant is not None:
        text = choice.variant["copy"].get(field_name)
        if text is None:
            raise RenderError(f"variant #{choice.variant['id']} has no copy field {field_name!r}")
        if choice.preview:
            return mark_safe(
                f'<mark class="aigc-preview" title="Preview: variant #{int(choice.variant["id"])} '
                f'({escape(choice.variant.get("status", ""))})">{escape(text)}</mark>'
            )
        return escape(text)
    text = choice.fallback.get(field_name)
    if not isinstance(text, str) or not text:
        raise RenderError(f"the fallback content of {choice.slot_key!r} has no {field_name!r}")
    return escape(text)


def fallback_banner_html(
    choice: Choice,
    *,
    size: str | None = None,
    loading: str = "lazy",
    css_class: str = "",
    img_class: str = "",
) -> SafeString:
    """The slot's fallback content as a banner: its image (if any) and its texts, linked to
    the fallback's ``link`` or the slot's link."""
    content = choice.fallback
    slot = choice.slot or {}
    label = size or (slot.get("sizes") or [None])[0]
    width = height = None
    if label:
        width, height = (int(n) for n in label.split("x"))
    parts = []
    image = safe_url(content.get("image"))
    if image:
        dimensions = f' width="{width}" height="{height}"' if width else ""
        class_attribute = f' class="{escape(img_class)}"' if img_class else ""
        alt = content.get("alt") or content.get("headline") or ""
        parts.append(
            f'<img src="{escape(image)}"{dimensions} alt="{escape(alt)}" loading="{loading}" '
            f'decoding="async"{class_attribute}>'
        )
    for name in COPY_FIELDS:
        text = content.get(name)
        if isinstance(text, str) and text:
            parts.append(f'<span class="aigc-{name}">{escape(text)}</span>')
    if not parts:
        raise RenderError(f"the fallback content of {choice.slot_key!r} has nothing to show")
    classes = " ".join(filter(None, ["aigc-banner", "aigc-fallback", css_class]))
    attributes = f'class="{escape(classes)}" data-aigc-slot="{escape(choice.slot_key)}"'
    href = safe_url(content.get("link")) or safe_url(slot.get("link"))
    if href:
        return mark_safe(f'<a href="{escape(href)}" {attributes}>{"".join(parts)}</a>')
    return mark_safe(f"<div {attributes}>{''.join(parts)}</div>")


def placeholder_html(
    slot_key: str,
    *,
    field_name: str | None = None,
    size: str | None = None,
    css_class: str = "",
) -> SafeString:
    """The empty element that the tracking script fills from the slots API (client mode).

    A banner placeholder is a ``<div>`` (with the banner's aspect ratio when ``size`` is
    given, so the page does not jump when it fills), a copy placeholder an empty ``<span>``.
    """
    classes = " ".join(filter(None, ["aigc-slot", css_class]))
    attributes = f'class="{escape(classes)}" data-aigc-slot="{escape(slot_key)}"'
    if field_name is not None:
        return mark_safe(f'<span {attributes} data-aigc-field="{escape(field_name)}"></span>')
    if size:
        width, height = size.split("x")
        attributes += f' data-aigc-size="{size}" style="aspect-ratio: {width} / {height}"'
    return mark_safe(f"<div {attributes}></div>")


def copy_fragment(choice: Choice) -> SafeString:
    """Every copy field of the choice as ``<span data-aigc-field=...>`` (API HTML)."""
    source = choice.variant["copy"] if choice.variant is not None else choice.fallback
    return mark_safe(
        "".join(
            f'<span class="aigc-{escape(name)}" data-aigc-field="{escape(name)}">'
            f"{escape(text)}</span>"
            for name, text in source.items()
            if isinstance(text, str) and text and name not in ("image", "link", "alt")
        )
    )


@functools.lru_cache(maxsize=4096)
def _signed_click_url(
    variant_id: int, slot_key: str, target: str, prefix: str, urlconf: Any
) -> str:
    # Tokens are deterministic (no timestamp), so one per variant, slot and target is
    # signed once per process instead of on every render.
    return clicks.click_url(variant_id, slot_key, target)


def click_href(choice: Choice, link: Any) -> str | None:
    """The banner's link: the signed click URL of the target (a preview links the target
    itself, so that staff clicks count nothing)."""
    variant = choice.variant
    assert variant is not None
    target = variant["link"] if link is None or link == "" else str(link)
    if not target:
        return None
    if choice.preview:
        return safe_url(target)
    try:
        return _signed_click_url(
            int(variant["id"]), choice.slot_key, target, get_script_prefix(), get_urlconf()
        )
    except clicks.UnsafeTarget:
        logger.warning("Slot %r links to %r, which is not a safe target.", choice.slot_key, target)
        return None


class SlotContent(dict):
    """What ``{% aigc_slot %}`` puts in the context: a dict, so templates read ``v.copy``."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


def slot_content(choice: Choice, size: str | None, href: str | None) -> SlotContent | None:
    """The ``{% aigc_slot %}`` / API view of a choice; None when there is nothing."""
    if choice.variant is not None:
        variant = choice.variant
        picture = None
        if variant["pictures"]:
            found = picture_for(variant, size)
            alt = variant["alt_text"] or variant["copy"].get("headline", "")
            picture = {**found, "html": mark_safe(picture_html(found, alt))}
        content = SlotContent(variant["copy"])
        content.update(
            id=variant["id"],
            slot=choice.slot_key,
            segment=choice.segment,
            copy=variant["copy"],
            alt_text=variant["alt_text"],
            picture=picture,
            link=href,
            is_fallback=False,
            is_preview=choice.preview,
        )
        return content
    if choice.fallback:
        fallback = choice.fallback
        texts = {k: v for k, v in fallback.items() if isinstance(v, str) and k not in ("image",)}
        image = safe_url(fallback.get("image"))
        link = safe_url(fallback.get("link")) or safe_url((choice.slot or {}).get("link"))
        content = SlotContent(texts)
        content.update(
            id=None,
            slot=choice.slot_key,
            segment="",
            copy=texts,
            alt_text=str(fallback.get("alt") or fallback.get("headline") or ""),
            picture={"src": image, "srcset": "", "sources": []} if image else None,
            link=link,
            is_fallback=True,
            is_preview=False,
        )
        return content
    return None
