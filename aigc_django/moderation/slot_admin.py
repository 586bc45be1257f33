"""Slot admin: placements, their sizes and copy limits, the brief, and the fallback content.

The change page previews the fallback content (what a visitor sees when no variant is
approved for them) in a mock of the slot at each of its sizes, drawn at the real aspect
ratio. The content dashboard is mounted here too (see ``dashboard.py``).
"""

from __future__ import annotations

from functools import partial

from django import forms
from django.contrib import admin
from django.core.files.storage import default_storage
from django.db.models import JSONField
from django.http import HttpRequest
from django.urls import URLPattern, path
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString
from django.utils.translation import gettext_lazy as _

from aigc_django.generation.service import DEFAULT_FIELDS, slot_sizes
from aigc_django.models import Slot
from aigc_django.moderation import dashboard, stats

PREVIEW_WIDTH = 320  # the largest box drawn, in CSS pixels
PREVIEW_HEIGHT = 240
TEXT_FIELDS = ("headline", "body", "cta")


@admin.register(Slot)
class SlotAdmin(admin.ModelAdmin):
    """Slots with their approved and pending variant counts; the dashboard hangs off here."""

    list_display = (
        "key",
        "name",
        "kind",
        "size_list",
        "variants_per_segment",
        "active",
        "approved_count",
        "pending_count",
    )
    list_filter = ("kind", "active")
    search_fields = ("key", "name", "brief")
    ordering = ("key",)
    fieldsets = (
        (None, {"fields": ("key", "name", "kind", "active", "link")}),
        (
            _("Content"),
            {"fields": ("sizes", "copy_fields", "variants_per_segment", "brief")},
        ),
        (
            _("Fallback"),
            {
                "fields": ("fallback", "fallback_preview"),
                "description": _(
                    "Shown when a visitor's segment has no approved variant, e.g. "
                    '{"headline": "...", "body": "...", "cta": "...", "image": "https://..."}. '
                    "Save and continue editing to refresh the preview."
                ),
            },
        ),
    )
    readonly_fields = ("fallback_preview",)

    def get_urls(self) -> list[URLPattern]:
        wrap = self.admin_site.admin_view
        own = [
            path(
                "dashboard/",
                wrap(partial(dashboard.dashboard_view, site=self.admin_site)),
                name="aigc_django_dashboard",
            ),
            path(
                "dashboard/generate/",
                wrap(partial(dashboard.generate_view, site=self.admin_site)),
                name="aigc_django_dashboard_generate",
            ),
        ]
        # Before the model's own URLs, whose "<object_id>/" would swallow "dashboard/".
        return own + super().get_urls()

    def get_queryset(self, request: HttpRequest):
        return stats.approved_and_pending(super().get_queryset(request))

    def formfield_for_dbfield(self, db_field, request, **kwargs):
        if isinstance(db_field, JSONField):
            rows = 6 if db_field.name == "fallback" else 2
            kwargs["widget"] = forms.Textarea(attrs={"rows": rows, "cols": 80})
        return super().formfield_for_dbfield(db_field, request, **kwargs)

    def changelist_view(self, request: HttpRequest, extra_context: dict | None = None):
        extra = {"dashboard_allowed": dashboard.can_view(request.user), **(extra_context or {})}
        return super().changelist_view(request, extra)

    @admin.display(description=_("sizes"))
    def size_list(self, obj: Slot) -> str:
        if obj.kind != Slot.Kind.BANNER:
            return "—"
        return ", ".join(f"{w}x{h}" for w, h in slot_sizes(obj))

    @admin.display(description=_("approved"), ordering="approved")
    def approved_count(self, obj: Slot) -> int:
        return obj.approved

    @admin.display(description=_("pending"), ordering="pending")
    def pending_count(self, obj: Slot) -> int:
        return obj.pending

    @admin.display(description=_("preview"))
    def fallback_preview(self, obj: Slot) -> SafeString | str:
        return render_fallback_preview(obj)


def image_url(value: object) -> str | None:
    """A URL the preview may load: http(s) and site-relative URLs as they are, a storage
    name through the default storage; anything else (``javascript:``, ``data:``) is refused."""
    if not isinstance(value, str) or not value.strip():
        return None
    value = value.strip()
    if value.startswith(("https://", "http://", "/")):
        return value
    if ":" in value:
        return None
    return default_storage.url(value)


def fallback_problems(slot: Slot, content: dict) -> list[str]:
    """Fallback texts longer than the slot's copy fields allow."""
    limits = slot.copy_fields if isinstance(slot.copy_fields, dict) else {}
    limits = limits or DEFAULT_FIELDS
    problems = []
    for name, limit in limits.items():
        text = content.get(name)
        if isinstance(text, str) and isinstance(limit, int) and len(text) > limit:
            problems.append(
                str(
                    _("%(field)s has %(length)s characters; the slot allows %(limit)s.")
                    % {"field": name, "length": len(text), "limit": limit}
                )
            )
    return problems


def render_fallback_preview(slot: Slot) -> SafeString | str:
    """The fallback content in a box per size of the slot (one box for copy slots)."""
    content = slot.fallback if isinstance(slot.fallback, dict) else {}
    texts = {name: str(content.get(name) or "") for name in TEXT_FIELDS}
    others = [
        (name, value)
        for name, value in content.items()
        if name not in (*TEXT_FIELDS, "image") and isinstance(value, str) and value
    ]
    if not any(texts.values()) and not others and not content.get("image"):
        return _("No fallback content: visitors without an approved variant see nothing here.")
    url = image_url(content.get("image"))
    sizes = slot_sizes(slot) or [(PREVIEW_WIDTH, PREVIEW_HEIGHT // 2)]
    boxes = [_preview_box(width, height, texts, others, url) for width, height in sizes]
    problems = fallback_problems(slot, content)
    if content.get("image") and url is None:
        problems.append(str(_("The image is not an http(s) URL, site path or storage name.")))
    return format_html(
        '<div class="aigc-preview" style="display:flex;flex-wrap:wrap;gap:16px;'
        'align-items:flex-start">{}</div>{}',
        format_html_join("", "{}", ((box,) for box in boxes)),
        format_html_join("", '<p class="errornote">{}</p>', ((p,) for p in problems)),
    )


def _preview_box(
    width: int, height: int, texts: dict[str, str], others: list[tuple[str, str]], url: str | None
) -> SafeString:
    scale = min(1.0, PREVIEW_WIDTH / width, PREVIEW_HEIGHT / height)
    shown_width, shown_height = max(1, round(width * scale)), max(1, round(height * scale))
    base = max(7, round(min(shown_height, shown_width) * 0.07))
    image = (
        format_html(
            '<img src="{}" alt="" style="position:absolute;inset:0;width:100%;height:100%;'
            'object-fit:cover">',
            url,
        )
        if url
        else ""
    )
    cta = (
        format_html(
            '<span style="display:inline-block;margin-top:4px;padding:2px 8px;'
            'background:#417690;color:#fff;border-radius:3px">{}</span>',
            texts["cta"],
        )
        if texts["cta"]
        else ""
    )
    return format_html(
        '<figure style="margin:0">'
        '<div data-size="{}x{}" style="position:relative;overflow:hidden;width:{}px;height:{}px;'
        'border:1px solid #ccc;background:#f0f0f0;font-size:{}px;line-height:1.2">{}'
        '<div style="position:absolute;left:0;right:0;bottom:0;padding:6%;'
        'background:linear-gradient(transparent,rgba(0,0,0,.55));color:#fff">'
        '<strong style="display:block;font-size:{}px">{}</strong>'
        "<span>{}</span>{}{}</div></div>"
        '<figcaption class="help">{} x {} px{}</figcaption></figure>',
        width,
        height,
        shown_width,
        shown_height,
        base,
        image,
        round(base * 1.6),
        texts["headline"],
        texts["body"],
        format_html_join("", '<span style="display:block">{}: {}</span>', others),
        cta,
        width,
        height,
        f" ({scale:.0%})" if scale < 1 else "",
    )
