"""Profiles stage: what each visitor likes, and the segments they fall into."""

from __future__ import annotations

from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from aigc_django.models.tracking import Visitor


class Segment(models.Model):
    """A group of visitors that content is generated for."""

    class Kind(models.TextChoices):
        LEARNED = "learned", _("learned")
        RULE = "rule", _("rule")
        EVERYONE = "everyone", _("everyone")

    key = models.SlugField(
        _("key"), max_length=64, unique=True, help_text=_("Stable across rebuilds.")
    )
    name = models.CharField(_("name"), max_length=120)
    description = models.TextField(_("description"), blank=True, default="")
    kind = models.CharField(_("kind"), max_length=16, choices=Kind.choices, default=Kind.LEARNED)
    centroid = models.JSONField(
        _("centroid"), null=True, blank=True, help_text=_("Learned segments only.")
    )
    rules = models.JSONField(_("rules"), null=True, blank=True, help_text=_("Rule segments only."))
    priority = models.IntegerField(
        _("priority"), default=0, help_text=_("Higher wins when several rule segments match.")
    )
    size = models.PositiveIntegerField(_("visitors"), default=0)
    top_categories = models.JSONField(_("top categories"), default=list, blank=True)
    top_items = models.JSONField(_("top items"), default=list, blank=True)
    active = models.BooleanField(_("active"), default=True)
    created_at = models.DateTimeField(_("created at"), default=timezone.now)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)

    class Meta:
        verbose_name = _("segment")
        verbose_name_plural = _("segments")
        ordering = ["key"]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        from django.core.exceptions import ValidationError

        from aigc_django.profiles.rules import validate_rules

        if self.kind == self.Kind.RULE:
            try:
                validate_rules(self.rules)
            except ValidationError as exc:
                raise ValidationError({"rules": exc.messages}) from None
        elif self.rules:
            raise ValidationError({"rules": _("Only rule segments have rules.")})


class Profile(models.Model):
    """What one visitor likes, rebuilt from their events."""

    visitor = models.OneToOneField(
        Visitor, on_delete=models.CASCADE, related_name="profile", verbose_name=_("visitor")
    )
    interests = models.JSONField(
        _("interests"), default=dict, blank=True, help_text=_("Decayed weight per category.")
    )
    embedding = models.JSONField(
        _("embedding"), null=True, blank=True, help_text=_("Collaborative-filtering factors.")
    )
    top_items = models.JSONField(_("top items"), default=list, blank=True)
    recency_days = models.FloatField(_("days since last event"), null=True, blank=True)
    frequency = models.PositiveIntegerField(_("events"), default=0)
    monetary = models.FloatField(_("money spent"), default=0.0)
    cart_open = models.BooleanField(
        _("cart open"), default=False, help_text=_("Added to the cart since the last purchase.")
    )
    last_cart_at = models.DateTimeField(_("last cart change"), null=True, blank=True)
    device = models.CharField(_("device"), max_length=16, blank=True, default="")
    referrer = models.CharField(_("referrer"), max_length=255, blank=True, default="")
    segment = models.ForeignKey(
        Segment,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="profiles",
        verbose_name=_("segment"),
    )
    built_at = models.DateTimeField(_("built at"), default=timezone.now)

    class Meta:
        verbose_name = _("profile")
        verbose_name_plural = _("profiles")

    def __str__(self) -> str:
        return f"profile of {self.visitor_id}"
