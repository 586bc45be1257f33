"""Admin registrations of the moderation stage (see aigc_django/moderation/)."""

from aigc_django.moderation import segment_admin  # noqa: F401
