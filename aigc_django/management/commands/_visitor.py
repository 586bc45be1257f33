"""Shared argument handling of the per-visitor privacy commands."""

from __future__ import annotations

import uuid

from django.contrib.auth import get_user_model
from django.core.management.base import CommandError, CommandParser

from aigc_django.models import Visitor


def add_visitor_arguments(parser: CommandParser) -> None:
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("visitor", nargs="?", help="The visitor's UUID (from the aigc_vid cookie).")
    group.add_argument("--user", help="The username of an account; its visitors are used.")


def visitor_ids(visitor: str | None, user: str | None) -> list[uuid.UUID]:
    """The visitors named on the command line; CommandError when there are none."""
    if user is not None:
        User = get_user_model()
        account = User._default_manager.filter(**{User.USERNAME_FIELD: user}).first()
        if account is None:
            raise CommandError(f"No user {user!r}.")
        ids = list(
            Visitor.objects.filter(user=account, merged_into__isnull=True).values_list(
                "id", flat=True
            )
        )
        if not ids:
            raise CommandError(f"User {user!r} has no visitor data.")
        return ids
    try:
        visitor_id = uuid.UUID(str(visitor))
    except ValueError:
        raise CommandError(f"{visitor!r} is not a visitor UUID.") from None
    if not Visitor.objects.filter(id=visitor_id).exists():
        raise CommandError(f"No visitor {visitor_id}.")
    return [visitor_id]
