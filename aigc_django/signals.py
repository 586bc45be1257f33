"""Signals that host projects can connect to.

``variant_approved`` and ``variant_rejected`` are sent after a review decision commits, with
``sender=Variant`` and the keyword arguments ``variant``, ``reviewer`` (None for automatic
approvals) and ``review`` (the audit row); ``variant_reviewed`` likewise after every decision
(archiving, regenerating and copy edits included). See docs/moderation.md.
"""

from aigc_django.moderation.signals import variant_approved, variant_rejected, variant_reviewed

__all__ = ["variant_approved", "variant_rejected", "variant_reviewed"]
