"""Signal receivers of the tracking stage."""

from __future__ import annotations

import uuid
from typing import Any

from django.http import HttpRequest

from aigc_django.tracking.visitors import merge_into_user


def merge_visitor_on_login(
    sender: Any, request: HttpRequest | None, user: Any, **kwargs: Any
) -> None:
    """On login, merge the browser's anonymous visitor into the user's visitor."""
    if request is None or not getattr(request, "aigc_tracking", False):
        return
    visitor_id = getattr(request, "aigc_visitor_id", None)
    if visitor_id is None:
        return
    # The middleware writes the new id into the cookie on the way out.
    request.aigc_visitor_id = merge_into_user(visitor_id, user)


def new_visitor_on_logout(sender: Any, request: HttpRequest | None, **kwargs: Any) -> None:
    """After logout the browser starts a new anonymous visitor, so whoever uses it next does
    not add to the account's history."""
    if request is not None and getattr(request, "aigc_tracking", False):
        request.aigc_visitor_id = uuid.uuid4()
