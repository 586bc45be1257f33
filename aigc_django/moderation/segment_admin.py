"""Segment admin: editors write rule segments; learned ones are read-only but for a few fields.

The change page also shows what the segment likes (its top categories as a bar chart, its
top items by catalog title) and a sample of its members: pseudonymous visitor ids and their
profile figures only, never anything personal.
"""

from __future__ import annotations

from django.contrib import admin
from django.db.models import F
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString
from django.utils.translation import gettext_lazy as _

from aigc_django.catalog import get_catalog
from aigc_django.generation.briefs import category_name
from aigc_django.models import Profile, Segment
from aigc_django.moderation import charts

MEMBER_SAMPLE = 20
TOP_INTERESTS = 3
EMPTY = "—"


@admin.register(Segment)
class SegmentAdmin(admin.ModelAdmin):
    """Segments: learned ones are read-only but for name and activity; editors write rule
    segments here (the rules are validated, see docs/profiles.md)."""

    list_display = ("name", "key", "kind", "size", "priority", "active")
    list_filter = ("kind", "active")
    search_fields = ("name", "key", "description")
    ordering = ("kind", "-size")
    fieldsets = (
        (
            None,
            {
                "fields": (
                    "name",
                    "key",
                    "kind",
                    "description",
                    "rules",
                    "priority",
                    "active",
                    "size",
                )
            },
        ),
        (_("What they like"), {"fields": ("top_categories_chart", "top_items_list")}),
        (_("Members"), {"fields": ("member_sample",)}),
        (_("Raw figures"), {"classes": ("collapse",), "fields": ("top_categories", "top_items")}),
    )
    readonly_fields = (
        "size",
        "top_categories",
        "top_items",
        "top_categories_chart",
        "top_items_list",
        "member_sample",
    )

    def get_readonly_fields(self, request, obj=None):
        fields = list(super().get_readonly_fields(request, obj))
        if obj is not None:
            fields.append("kind")  # a learned segment cannot become a rule one
            if obj.kind != Segment.Kind.RULE:
                fields += ["key", "description", "rules", "priority"]
        return fields

    def get_changeform_initial_data(self, request):
        return {"kind": Segment.Kind.RULE, "rules": [{"type": "new_visitor", "days": 7}]}

    def has_delete_permission(self, request, obj=None) -> bool:
        # Learned segments and everyone carry approved content and statistics: retire them
        # (active = off) instead.
        if obj is not None and obj.kind != Segment.Kind.RULE:
            return False
        return super().has_delete_permission(request, obj)

    @admin.display(description=_("top categories"))
    def top_categories_chart(self, obj: Segment) -> SafeString | str:
        """The segment's top categories and their weights as horizontal bars."""
        rows = [
            (category_name(str(entry[0])), float(entry[1]))
            for entry in (obj.top_categories or [])
            if isinstance(entry, list | tuple) and len(entry) >= 2
        ]
        if not rows:
            return EMPTY
        return charts.horizontal_bars(
            rows,
            title=str(_("Top categories of %(name)s") % {"name": obj.name}),
            value_format="{:.2f}",
        )

    @admin.display(description=_("top items"))
    def top_items_list(self, obj: Segment) -> SafeString | str:
        """The segment's top items in order, by their catalog titles (one query)."""
        keys = [str(key) for key in (obj.top_items or [])]
        if not keys:
            return EMPTY
        catalog = get_catalog()
        titles = {item.key: item.title for item in catalog.items(keys)} if catalog else {}
        return format_html(
            '<ol style="margin:0;padding-left:1.5em">{}</ol>',
            format_html_join(
                "",
                "<li>{} <code>{}</code></li>",
                ((titles.get(key, _("(not in the catalog)")), key) for key in keys),
            ),
        )

    @admin.display(description=_("sample of members"))
    def member_sample(self, obj: Segment) -> SafeString | str:
        """The most recently active members (one query): visitor id, events, money spent,
        days since the last event and top interests. Nothing that names a person."""
        if obj.pk is None:
            return EMPTY
        profiles = (
            Profile.objects.filter(segment=obj)
            .only("visitor_id", "frequency", "monetary", "recency_days", "interests")
            .order_by(F("recency_days").asc(nulls_last=True), "-built_at")[:MEMBER_SAMPLE]
        )
        rows = [
            (
                profile.visitor_id,
                profile.frequency,
                f"{profile.monetary:.2f}",
                EMPTY if profile.recency_days is None else f"{profile.recency_days:.1f}",
                ", ".join(top_interests(profile.interests)) or EMPTY,
            )
            for profile in profiles
        ]
        if not rows:
            return _("No members yet.")
        header = format_html_join(
            "",
            "<th>{}</th>",
            (
                (_("visitor"),),
                (_("events"),),
                (_("money spent"),),
                (_("days since last event"),),
                (_("top interests"),),
            ),
        )
        body = format_html_join(
            "",
            "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            rows,
        )
        return format_html(
            '<table><thead><tr>{}</tr></thead><tbody>{}</tbody></table><p class="help">{}</p>',
            header,
            body,
            _("The %(count)s most recently active of %(size)s members.")
            % {"count": len(rows), "size": obj.size},
        )


def top_interests(interests: object, count: int = TOP_INTERESTS) -> list[str]:
    """The names of the ``count`` categories with the highest weights in a profile."""
    if not isinstance(interests, dict):
        return []
    weighted = []
    for key, weight in interests.items():
        try:
            weighted.append((float(weight), str(key)))
        except (TypeError, ValueError):
            continue
    weighted.sort(key=lambda pair: (-pair[0], pair[1]))
    return [category_name(key) for weight, key in weighted[:count] if weight > 0]
