"""Segment admin: editors write rule segments; learned ones are read-only but for a few fields."""

from __future__ import annotations

from django.contrib import admin

from aigc_django.models import Segment


@admin.register(Segment)
class SegmentAdmin(admin.ModelAdmin):
    """Segments: learned ones are read-only but for name and activity; editors write rule
    segments here (the rules are validated, see docs/profiles.md)."""

    list_display = ("name", "key", "kind", "size", "priority", "active")
    list_filter = ("kind", "active")
    search_fields = ("name", "key", "description")
    ordering = ("kind", "-size")
    fields = (
        "name",
        "key",
        "kind",
        "description",
        "rules",
        "priority",
        "active",
        "size",
        "top_categories",
        "top_items",
    )
    readonly_fields = ("size", "top_categories", "top_items")

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
