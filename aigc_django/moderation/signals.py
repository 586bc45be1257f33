"""Signals of the moderation stage, and the receiver that applies the auto-approval policy.

Host projects connect to ``variant_approved`` and ``variant_rejected`` (also importable from
``aigc_django.signals``). Each is sent once per decision that approves (rejects) a variant,
after the decision's transaction commits, with ``sender=Variant`` and the keyword arguments
``variant`` (the variant as it is now), ``reviewer`` (the user, or None for the auto-approval
policy) and ``review`` (the ``Review`` audit row). ``variant_reviewed`` is sent the same way
after every decision, archiving, regenerating and copy edits included (what a cache of the
live variants listens to). A receiver that raises is logged and does not undo the decision.

This module imports no models, so projects may import it anywhere.
"""

from __future__ import annotations

from typing import Any

from django.db.models.signals import post_save
from django.dispatch import Signal, receiver

variant_approved = Signal()
variant_rejected = Signal()
variant_reviewed = Signal()


@receiver(post_save, sender="aigc_django.Variant", dispatch_uid="aigc_auto_review_variant")
def auto_review_new_variant(
    sender: Any, instance: Any, created: bool, raw: bool = False, **kwargs: Any
) -> None:
    """Apply ``AIGC["MODERATION"]["AUTO_APPROVE"]`` to every variant generation stores."""
    if not created or raw:
        return
    from aigc_django.moderation.review import auto_review

    auto_review(instance)
