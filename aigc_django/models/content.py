"""Generation, moderation and delivery stages: placements and what fills them."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from aigc_django.models.profiles import Segment


class Slot(models.Model):
    """A placement on the site that generated content fills."""

    class Kind(models.TextChoices):
        BANNER = "banner", _("banner")
        COPY = "copy", _("copy")

    key = models.SlugField(_("key"), max_length=64, unique=True)
    name = models.CharField(_("name"), max_length=120)
    kind = models.CharField(_("kind"), max_length=16, choices=Kind.choices, default=Kind.BANNER)
    sizes = models.JSONField(
        _("sizes"),
        default=list,
        blank=True,
        help_text=_("Banner sizes as [width, height] pairs, e.g. [[1200, 400], [600, 600]]."),
    )
    copy_fields = models.JSONField(
        _("copy fields"),
        default=dict,
        blank=True,
        help_text=_('Maximum length per field, e.g. {"headline": 60, "body": 160, "cta": 24}.'),
    )
    brief = models.TextField(_("brief"), blank=True, default="")
    variants_per_segment = models.PositiveSmallIntegerField(_("variants per segment"), default=3)
    fallback = models.JSONField(_("fallback content"), default=dict, blank=True)
    link = models.CharField(_("link"), max_length=500, blank=True, default="")
    active = models.BooleanField(_("active"), default=True)

    class Meta:
        verbose_name = _("slot")
        verbose_name_plural = _("slots")
        ordering = ["key"]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        """Sizes as [width, height] pairs within 16..8192 px; copy fields as name -> limit."""
        from django.core.exceptions import ValidationError

        from aigc_django.checks import valid_size

        errors = {}
        if not isinstance(self.sizes, list) or not all(valid_size(s) for s in self.sizes):
            errors["sizes"] = _(
                "Give a list of [width, height] pairs, each within 16..8192 pixels, "
                "e.g. [[1200, 628], [300, 250]]."
            )
        elif self.kind == self.Kind.COPY and self.sizes:
            errors["sizes"] = _("Copy slots have no banner sizes.")
        fields = self.copy_fields
        if not isinstance(fields, dict) or not all(
            isinstance(name, str)
            and name.isidentifier()
            and isinstance(limit, int)
            and not isinstance(limit, bool)
            and 1 <= limit <= 2000
            for name, limit in fields.items()
        ):
            errors["copy_fields"] = _(
                "Give field names and maximum lengths (1..2000 characters), e.g. "
                '{"headline": 60, "body": 160, "cta": 24}.'
            )
        if errors:
            raise ValidationError(errors)


class Variant(models.Model):
    """One generated piece of content for a (slot, segment) pair."""

    class Status(models.TextChoices):
        PENDING = "pending", _("pending")
        APPROVED = "approved", _("approved")
        REJECTED = "rejected", _("rejected")
        ARCHIVED = "archived", _("archived")

    slot = models.ForeignKey(
        Slot, on_delete=models.CASCADE, related_name="variants", verbose_name=_("slot")
    )
    segment = models.ForeignKey(
        Segment, on_delete=models.CASCADE, related_name="variants", verbose_name=_("segment")
    )
    job = models.ForeignKey(
        "aigc_django.GenerationJob",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="variants",
        verbose_name=_("job"),
    )
    position = models.PositiveSmallIntegerField(
        _("position in job"),
        null=True,
        blank=True,
        help_text=_("Which of its job's variants this is; a job makes each position once."),
    )
    copy = models.JSONField(_("copy"), default=dict, blank=True)
    image = models.ImageField(_("image"), upload_to="aigc/variants/", blank=True)
    renditions = models.JSONField(_("renditions"), default=dict, blank=True)
    alt_text = models.CharField(_("alt text"), max_length=250, blank=True, default="")
    layout = models.JSONField(
        _("layout"),
        default=dict,
        blank=True,
        help_text=_(
            "Where each element went on each size of the banner, and whether the layout "
            "model or the fixed layouts placed it; the layout model learns from these."
        ),
    )
    status = models.CharField(
        _("status"), max_length=16, choices=Status.choices, default=Status.PENDING, db_index=True
    )
    safety = models.JSONField(_("safety report"), default=dict, blank=True)
    provenance = models.JSONField(_("provenance"), default=dict, blank=True)
    impressions = models.PositiveIntegerField(_("impressions"), default=0)
    clicks = models.PositiveIntegerField(_("clicks"), default=0)
    conversions = models.PositiveIntegerField(_("conversions"), default=0)
    created_at = models.DateTimeField(_("created at"), default=timezone.now)
    version = models.PositiveIntegerField(
        _("version"),
        default=1,
        editable=False,
        help_text=_(
            "Goes up with every review decision and copy edit, so that two editors acting "
            "on the same variant cannot overwrite each other unnoticed."
        ),
    )
    edited = models.BooleanField(
        _("edited"),
        default=False,
        help_text=_("An editor changed the generated copy."),
    )
    reviewed_at = models.DateTimeField(
        _("reviewed at"),
        null=True,
        blank=True,
        help_text=_("When the last review decision or edit was made."),
    )

    class Meta:
        verbose_name = _("variant")
        verbose_name_plural = _("variants")
        permissions = [("review_variant", _("Can approve, reject and edit variants"))]
        indexes = [
            models.Index(fields=["slot", "segment", "status"], name="aigc_variant_lookup"),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["job", "position"],
                name="aigc_variant_job_position",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.slot_id}/{self.segment_id} #{self.pk}"

    def renditions_in_order(self) -> list[tuple[str, dict]]:
        """``renditions`` as (size label, entry) pairs in the slot's order of sizes (then any
        others): PostgreSQL's ``jsonb`` does not keep the keys in the order they were saved."""
        from aigc_django.delivery.cache import size_labels

        renditions = self.renditions if isinstance(self.renditions, dict) else {}
        labels = [label for label in size_labels(self.slot.sizes) if label in renditions]
        labels += [label for label in renditions if label not in labels]
        return [(label, renditions[label]) for label in labels]


class Review(models.Model):
    """An editor's decision on a variant: the audit trail."""

    class Action(models.TextChoices):
        APPROVE = "approve", _("approved")
        REJECT = "reject", _("rejected")
        ARCHIVE = "archive", _("archived")
        EDIT = "edit", _("edited the copy")
        REGENERATE = "regenerate", _("regenerated")
        AUTO_APPROVE = "auto_approve", _("approved automatically")

    variant = models.ForeignKey(
        Variant, on_delete=models.CASCADE, related_name="reviews", verbose_name=_("variant")
    )
    reviewer = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="aigc_reviews",
        verbose_name=_("reviewer"),
        help_text=_("Empty for decisions the system made (auto-approval)."),
    )
    action = models.CharField(_("action"), max_length=32, choices=Action.choices)
    status_before = models.CharField(_("status before"), max_length=16)
    status_after = models.CharField(_("status after"), max_length=16)
    note = models.TextField(_("note"), blank=True, default="")
    created_at = models.DateTimeField(_("time"), default=timezone.now)

    class Meta:
        verbose_name = _("review")
        verbose_name_plural = _("reviews")
        ordering = ["-created_at", "-pk"]

    def __str__(self) -> str:
        return f"{self.action} on {self.variant_id}"
