"""``SlotBlock``: a StreamField block that places a personalized slot on a Wagtail page.

The block stores the slot's key, not its primary key: the delivery tags look slots up by key,
a slot deleted and made again under the same key keeps working, and a slot that no longer
exists renders nothing (the tags never raise into the page).
"""

from __future__ import annotations

import re
from typing import Any

from django.core.exceptions import ValidationError
from django.core.validators import RegexValidator
from django.utils.translation import gettext_lazy as _
from wagtail import blocks

SIZE_PATTERN = re.compile(r"^[1-9][0-9]{1,3}x[1-9][0-9]{1,3}$")


def active_slot_choices() -> list[tuple[str, str]]:
    """The active slots as (key, "name (key)") pairs, read when the editing form is built.

    Called by Wagtail when it renders or validates the block's form, never at import time
    (the database may not exist yet then). A module-level function so that the block
    deconstructs into migrations as a dotted path.
    """
    from aigc_django.models import Slot

    return [
        (key, f"{name} ({key})")
        for key, name in Slot.objects.filter(active=True).values_list("key", "name")
    ]


class SlotBlock(blocks.StructBlock):
    """A personalized slot: the visitor's approved banner, or one copy field of a copy slot.

    Render it with ``{% include_block %}`` (as Wagtail's own templates do) so that the
    request reaches the delivery tags and the variant is chosen for the visitor.
    """

    slot = blocks.ChoiceBlock(
        choices=active_slot_choices,
        label=_("Slot"),
        help_text=_("The placement to fill; each visitor sees the variant chosen for them."),
    )
    size = blocks.CharBlock(
        required=False,
        max_length=9,
        label=_("Banner size"),
        help_text=_(
            'For banner slots: one of the slot\'s sizes as WIDTHxHEIGHT, e.g. "1200x628". '
            "Empty for the slot's first size."
        ),
        validators=[
            RegexValidator(SIZE_PATTERN, _('Give the size as WIDTHxHEIGHT, e.g. "1200x628".'))
        ],
    )
    field = blocks.CharBlock(
        required=False,
        max_length=64,
        label=_("Copy field"),
        help_text=_('For copy slots: the field to show, e.g. "headline". Empty shows the banner.'),
    )

    class Meta:
        icon = "image"
        label = _("Personalized slot")
        template = "aigc_django/wagtail/slot_block.html"

    def clean(self, value: blocks.StructValue) -> blocks.StructValue:
        """Check the size and field against the chosen slot, so an editor learns of a typo
        when saving the page rather than from an empty space on the live site."""
        from aigc_django.models import Slot

        value = super().clean(value)
        slot = Slot.objects.filter(key=value.get("slot")).first()
        if slot is None:
            return value
        errors: dict[str, ValidationError] = {}
        size = value.get("size")
        known_sizes = [f"{w}x{h}" for w, h in slot.sizes or [] if isinstance(w, int)]
        if size and slot.kind == Slot.Kind.COPY:
            errors["size"] = ValidationError(_("Copy slots have no banner sizes."))
        elif size and known_sizes and size not in known_sizes:
            errors["size"] = ValidationError(
                _("This slot's sizes are %(sizes)s.") % {"sizes": ", ".join(known_sizes)}
            )
        field = value.get("field")
        known_fields = list(slot.copy_fields or {})
        if slot.kind == Slot.Kind.COPY and not field:
            errors["field"] = ValidationError(_("Choose which copy field to show."))
        elif field and known_fields and field not in known_fields:
            errors["field"] = ValidationError(
                _("This slot's copy fields are %(fields)s.") % {"fields": ", ".join(known_fields)}
            )
        if errors:
            raise blocks.StructBlockValidationError(block_errors=errors)
        return value

    def get_context(
        self, value: blocks.StructValue, parent_context: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """Adds ``slot_key``, ``size`` ("1200x628" or None for the slot's first) and ``field``."""
        context = super().get_context(value, parent_context=parent_context)
        context["slot_key"] = value.get("slot") or ""
        context["size"] = value.get("size") or None
        context["field"] = value.get("field") or ""
        return context
