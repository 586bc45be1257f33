"""Review decisions on variants: approve, reject, archive, edit the copy, regenerate.

Every decision:

- runs in one transaction, locks the variant's row and changes it with a conditional
  ``UPDATE ... WHERE version = <the version the editor saw>``, so that of two editors acting
  on the same variant at once the second gets a ``ReviewConflict`` (naming who changed it,
  when, and its status now) instead of silently overwriting the first;
- refuses a change of status that makes no sense (``InvalidTransition``), e.g. approving an
  archived variant;
- bumps ``Variant.version`` and writes one ``Review`` audit row (who, what, the status before
  and after, a note);
- sends ``variant_approved`` / ``variant_rejected`` (and ``variant_reviewed`` for every
  decision) after the transaction commits.

Pass ``expected_version`` (the ``version`` the editor's page showed) from every user
interface; without it the variant's version at the time of the call is taken, which still
protects against a write in between but not against a decision made on a stale page.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from django.contrib.auth.base_user import AbstractBaseUser
from django.db import transaction
from django.db.models import F
from django.utils import formats, timezone
from django.utils.module_loading import import_string
from django.utils.translation import gettext as _

from aigc_django.conf import aigc_settings
from aigc_django.models import GenerationJob, Review, Variant
from aigc_django.moderation.signals import variant_approved, variant_rejected, variant_reviewed

logger = logging.getLogger("aigc_django.moderation")

Status = Variant.Status
Action = Review.Action
User = AbstractBaseUser | Any  # any user model; None for the system

# The statuses each action may start from, and the status it leaves.
ALLOWED_FROM: dict[str, set[str]] = {
    Action.APPROVE: {Status.PENDING, Status.REJECTED},
    Action.AUTO_APPROVE: {Status.PENDING},
    Action.REJECT: {Status.PENDING, Status.APPROVED},
    Action.ARCHIVE: {Status.PENDING, Status.APPROVED, Status.REJECTED},
    Action.EDIT: {Status.PENDING, Status.APPROVED, Status.REJECTED},
    Action.REGENERATE: {Status.PENDING, Status.APPROVED, Status.REJECTED, Status.ARCHIVED},
}
STATUS_AFTER: dict[str, str] = {
    Action.APPROVE: Status.APPROVED,
    Action.AUTO_APPROVE: Status.APPROVED,
    Action.REJECT: Status.REJECTED,
    Action.ARCHIVE: Status.ARCHIVED,
    Action.EDIT: Status.PENDING,
    Action.REGENERATE: Status.ARCHIVED,
}
VERBS: dict[str, str] = {
    Action.APPROVE: "approved",
    Action.AUTO_APPROVE: "approved",
    Action.REJECT: "rejected",
    Action.ARCHIVE: "archived",
    Action.EDIT: "edited",
    Action.REGENERATE: "regenerated",
}


class ReviewError(Exception):
    """A decision that was not made; the message says why, in words for an editor."""


class ReviewConflict(ReviewError):
    """Someone else changed the variant since the editor loaded it."""

    def __init__(self, variant: Variant) -> None:
        self.variant = variant
        super().__init__(conflict_message(variant))


class InvalidTransition(ReviewError):
    """The variant's status does not allow the action (approving an archived variant)."""


class InvalidCopy(ReviewError):
    """Edited copy that does not fit the slot; ``errors`` maps field names to messages."""

    def __init__(self, errors: dict[str, str]) -> None:
        self.errors = errors
        super().__init__("; ".join(f"{name}: {message}" for name, message in errors.items()))


def reviewer_name(user: User | None) -> str:
    """How the audit trail names a reviewer: full name, else username; "the system" for None."""
    if user is None:
        return _("the system")
    full = user.get_full_name() if hasattr(user, "get_full_name") else ""
    return full or user.get_username()


def conflict_message(variant: Variant) -> str:
    """What the second of two editors is told: who changed the variant, when, and to what."""
    last = variant.reviews.select_related("reviewer").order_by("-created_at", "-pk").first()
    if last is None:
        who, when = _("someone"), formats.date_format(timezone.localtime(), "DATETIME_FORMAT")
    else:
        who = reviewer_name(last.reviewer)
        when = formats.date_format(timezone.localtime(last.created_at), "DATETIME_FORMAT")
    return _(
        "This variant was changed by %(who)s at %(when)s while you were looking at it: "
        "it is now %(status)s. Reload to see the change."
    ) % {"who": who, "when": when, "status": variant.get_status_display()}


def _locked(variant: Variant, action: str, expected_version: int | None) -> Variant:
    """The variant's current row, locked for this transaction, checked for the action."""
    current = Variant.objects.select_for_update().select_related("slot").get(pk=variant.pk)
    if expected_version is not None and current.version != expected_version:
        raise ReviewConflict(current)
    if current.status not in ALLOWED_FROM[action]:
        raise InvalidTransition(
            _("Variant #%(pk)s is %(status)s: it cannot be %(verb)s.")
            % {"pk": current.pk, "status": current.get_status_display(), "verb": VERBS[action]}
        )
    return current


def _write(current: Variant, user: User | None, action: str, note: str, **changes: Any) -> Review:
    """Apply the action to the locked row (only if its version is still the same) and log it."""
    now = timezone.now()
    status_after = STATUS_AFTER[action]
    updated = Variant.objects.filter(pk=current.pk, version=current.version).update(
        status=status_after, version=F("version") + 1, reviewed_at=now, **changes
    )
    if not updated:  # a database without row locks let another write in between
        current.refresh_from_db()
        raise ReviewConflict(current)
    return Review.objects.create(
        variant=current,
        reviewer=user if user is not None and user.is_authenticated else None,
        action=action,
        status_before=current.status,
        status_after=status_after,
        note=note,
        created_at=now,
    )


def _after_commit(variant: Variant, user: User | None, review: Review) -> None:
    """Refresh the caller's instance and queue the decision's signal for after the commit."""
    variant.refresh_from_db()
    signals = [variant_reviewed]
    if review.status_before != review.status_after:
        if review.status_after == Status.APPROVED:
            signals.insert(0, variant_approved)
        elif review.status_after == Status.REJECTED:
            signals.insert(0, variant_rejected)

    def send() -> None:
        for signal in signals:
            for receiver, result in signal.send_robust(
                sender=Variant, variant=variant, reviewer=user, review=review
            ):
                if isinstance(result, Exception):
                    logger.error(
                        "A receiver (%r) of a moderation signal failed for variant %s",
                        receiver,
                        variant.pk,
                        exc_info=result,
                    )

    transaction.on_commit(send)


def _decide(
    variant: Variant,
    user: User | None,
    action: str,
    note: str = "",
    expected_version: int | None = None,
) -> Review:
    with transaction.atomic():
        current = _locked(variant, action, expected_version)
        review = _write(current, user, action, note.strip())
        _after_commit(variant, user, review)
    return review


def approve(
    variant: Variant, user: User | None, note: str = "", expected_version: int | None = None
) -> Review:
    """Approve a pending or rejected variant: visitors may see it from now on."""
    return _decide(variant, user, Action.APPROVE, note, expected_version)


def reject(
    variant: Variant, user: User | None, note: str = "", expected_version: int | None = None
) -> Review:
    """Reject a pending or approved variant: visitors no longer see it."""
    return _decide(variant, user, Action.REJECT, note, expected_version)


def archive(
    variant: Variant, user: User | None, note: str = "", expected_version: int | None = None
) -> Review:
    """Retire a variant for good (it keeps its statistics); archived variants stay archived."""
    return _decide(variant, user, Action.ARCHIVE, note, expected_version)


def clean_copy(variant: Variant, copy: dict[str, Any]) -> dict[str, str]:
    """The edited fields, stripped, checked against the slot's fields and length limits.

    Raises ``InvalidCopy`` naming every bad field: a name the slot does not have, a value
    that is not text, empty text, or text over the field's limit.
    """
    from aigc_django.generation.service import slot_fields

    limits = slot_fields(variant.slot)
    cleaned: dict[str, str] = {}
    errors: dict[str, str] = {}
    for name, value in copy.items():
        if name not in limits:
            errors[name] = _("The slot %(slot)s has no copy field %(name)r.") % {
                "slot": variant.slot.key,
                "name": name,
            }
        elif not isinstance(value, str):
            errors[name] = _("Give text.")
        elif not value.strip():
            errors[name] = _("This field cannot be empty.")
        elif len(value.strip()) > limits[name]:
            errors[name] = _(
                "Ensure this has at most %(limit)s characters (it has %(length)s)."
            ) % {"limit": limits[name], "length": len(value.strip())}
        else:
            cleaned[name] = value.strip()
    if errors:
        raise InvalidCopy(errors)
    return cleaned


def edit_copy(
    variant: Variant,
    user: User | None,
    copy: dict[str, Any],
    expected_version: int | None = None,
) -> Review | None:
    """Change some of a variant's copy fields; None when nothing changed.

    The edited variant is marked ``edited``, goes back to pending (it needs approval again,
    even when it was approved) and its banners are drawn again in the background (the
    ``aigc_django.rerender_variant`` task, sent once the edit commits), which also checks the
    new copy again. The audit row's note keeps the old and the new text of every field.
    """
    cleaned = clean_copy(variant, copy)
    with transaction.atomic():
        current = _locked(variant, Action.EDIT, expected_version)
        old = dict(current.copy or {})
        new = {**old, **cleaned}
        if new == old:
            return None
        note = "\n".join(
            f"{name}: {old.get(name, '')!r} -> {new[name]!r}"
            for name in new
            if old.get(name) != new[name]
        )
        review = _write(current, user, Action.EDIT, note, copy=new, edited=True)
        _after_commit(variant, user, review)
        transaction.on_commit(lambda: _send_rerender(current.pk))
    return review


def _send_rerender(variant_id: int) -> None:
    """Queue the re-render; with the broker down, draw the banners in this request instead
    (a second or so) rather than failing an edit that is already saved."""
    from kombu.exceptions import KombuError

    from aigc_django.tasks import rerender_variant

    try:
        rerender_variant.delay(variant_id)
        return
    except (KombuError, OSError) as exc:  # the broker is down (as in service.enqueue)
        logger.warning(
            "Could not queue the re-render of variant #%s (%s: %s); drawing it in this "
            "request instead.",
            variant_id,
            type(exc).__name__,
            exc,
        )
    try:
        rerender_variant.run(variant_id)
    except Exception:
        # The edit stands; its banners still show the old text until it is edited again.
        logger.exception("Re-rendering variant #%s failed.", variant_id)


def regenerate(
    variant: Variant, user: User | None, note: str = "", expected_version: int | None = None
) -> tuple[Review, GenerationJob]:
    """Archive the variant and queue a job for one new variant of its slot and segment.

    The job uses the same backends as the variant's own job and is sent to the generation
    queue when the transaction commits; the new variant arrives pending (or is approved by
    the auto-approval policy).
    """
    from aigc_django.generation.service import create_job, enqueue

    with transaction.atomic():
        current = _locked(variant, Action.REGENERATE, expected_version)
        spec = None
        if current.job_id is not None:
            spec = GenerationJob.objects.filter(pk=current.job_id).values_list("spec", flat=True)[0]
        key = f"regenerate:{current.pk}:{current.version}"
        job = create_job(current.slot, current.segment, 1, key=key, spec=spec)
        if job is None:  # cannot happen under the row lock, but never queue nothing
            job = create_job(current.slot, current.segment, 1, key=f"{key}:{timezone.now()}")
        text = note.strip()
        generated = _("A replacement is being generated (job #%(job)s).") % {"job": job.pk}
        review = _write(current, user, Action.REGENERATE, f"{text}\n{generated}".strip())
        _after_commit(variant, user, review)
        enqueue(job)
    return review, job


def auto_approval_policy() -> tuple[str, Callable[[Variant], bool]] | None:
    """The configured policy as (label, test), or None when auto-approval is off."""
    policy = aigc_settings.MODERATION["AUTO_APPROVE"]
    if policy is None:
        return None
    if policy == "safe":
        return "safe", lambda variant: (variant.safety or {}).get("ok") is True
    if callable(policy):
        return getattr(policy, "__qualname__", repr(policy)), policy
    return str(policy), import_string(str(policy))


def auto_review(variant: Variant) -> Review | None:
    """Approve a new pending variant when ``AIGC["MODERATION"]["AUTO_APPROVE"]`` says so.

    Logged as a review with no reviewer (action ``auto_approve``). Runs for every variant that
    generation stores. A policy that fails (cannot be imported, raises) is logged and leaves
    the variant pending: generation never fails because of it.
    """
    if variant.status != Status.PENDING:
        return None
    try:
        policy = auto_approval_policy()
        if policy is None:
            return None
        label, test = policy
        if not test(variant):
            return None
    except Exception:
        logger.exception("The auto-approval policy failed for variant %s", variant.pk)
        return None
    try:
        return _decide(
            variant,
            None,
            Action.AUTO_APPROVE,
            _("Approved by the auto-approval policy %(policy)s.") % {"policy": label},
        )
    except ReviewError:  # an editor was quicker
        return None
