"""Tracking stage: who the visitor is and what they did."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _


class EventKind(models.TextChoices):
    PAGE_VIEW = "page_view", _("page view")
    PRODUCT_VIEW = "product_view", _("product view")
    CATEGORY_VIEW = "category_view", _("category view")
    SEARCH = "search", _("search")
    ADD_TO_CART = "add_to_cart", _("add to cart")
    REMOVE_FROM_CART = "remove_from_cart", _("remove from cart")
    PURCHASE = "purchase", _("purchase")
    IMPRESSION = "impression", _("impression")
    CLICK = "click", _("click")


class Visitor(models.Model):
    """A pseudonymous visitor, named by the UUID in the signed ``aigc_vid`` cookie.

    Only visitors who may be tracked are ever stored: bots, Do-Not-Track, Global Privacy
    Control and visitors without consent leave no row, so there is no flag for them.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="aigc_visitors",
        verbose_name=_("user"),
        help_text=_("The account this visitor logged in as, if any."),
        db_index=False,  # a partial index, see Meta: most visitors have no account
    )
    merged_into = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="merged_visitors",
        verbose_name=_("merged into"),
        help_text=_("Set when this anonymous visitor logged in and was merged into the user's."),
        db_index=False,  # a partial index, see Meta: few visitors are ever merged
    )
    first_seen = models.DateTimeField(_("first seen"), default=timezone.now)
    # Not indexed: ingest moves last_seen on all the time, and an indexed column makes every
    # such update write a new entry into every index of the table (no HOT update). Only the
    # daily purge filters on it.
    last_seen = models.DateTimeField(_("last seen"), default=timezone.now)

    class Meta:
        verbose_name = _("visitor")
        verbose_name_plural = _("visitors")
        # Partial: a new visitor (no account, not merged) adds no entry to either; lookups
        # by account and of a visitor's merged visitors use them.
        indexes = [
            models.Index(
                fields=["user"], name="aigc_visitor_user", condition=Q(user__isnull=False)
            ),
            models.Index(
                fields=["merged_into"],
                name="aigc_visitor_merged",
                condition=Q(merged_into__isnull=False),
            ),
        ]

    def __str__(self) -> str:
        return str(self.id)


class Event(models.Model):
    """One thing a visitor did. Written in bulk by :mod:`aigc_django.tracking.ingest`."""

    id = models.BigAutoField(primary_key=True)
    visitor = models.ForeignKey(
        Visitor,
        on_delete=models.CASCADE,
        related_name="events",
        verbose_name=_("visitor"),
        # The (visitor, occurred_at) index serves visitor lookups; one more costs every write.
        db_index=False,
        # No database constraint: its check ran once per event written (a lookup and a row
        # lock on the visitor each). Every writer upserts the event's visitor, holding its
        # row lock, in the transaction that writes the event, and erasure and merges lock
        # the visitor first (tracking.privacy, tracking.visitors), so no event outlives its
        # visitor; deleting a visitor through the ORM still deletes its events.
        db_constraint=False,
    )
    kind = models.CharField(
        _("kind"), max_length=40, help_text=_("A builtin kind or one of CUSTOM_EVENT_KINDS.")
    )
    item_key = models.CharField(_("item"), max_length=128, blank=True, default="")
    category_key = models.CharField(_("category"), max_length=128, blank=True, default="")
    value = models.FloatField(
        _("value"), null=True, blank=True, help_text=_("Money for purchases and carts.")
    )
    properties = models.JSONField(_("properties"), default=dict, blank=True)
    occurred_at = models.DateTimeField(_("occurred at"), default=timezone.now)

    class Meta:
        verbose_name = _("event")
        verbose_name_plural = _("events")
        # The index on occurred_at (for time-range purges) is made by migration 0003: BRIN on
        # PostgreSQL, a fraction of a B-tree's cost to keep up for rows that arrive in time
        # order; a B-tree elsewhere.
        indexes = [
            models.Index(fields=["visitor", "occurred_at"], name="aigc_event_visitor_time"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.item_key or self.category_key}".strip()


class IngestBatch(models.Model):
    """Marks a buffered batch as written, in the same transaction as its events.

    A flusher that dies after committing leaves its batch in the buffer; the next flusher
    finds this row and drops the batch instead of writing it twice.
    """

    key = models.CharField(_("key"), max_length=64, unique=True)
    size = models.PositiveIntegerField(_("events"))
    written_at = models.DateTimeField(_("written at"), default=timezone.now, db_index=True)

    class Meta:
        verbose_name = _("ingest batch")
        verbose_name_plural = _("ingest batches")

    def __str__(self) -> str:
        return self.key
