"""aigc-django: personalized AI-generated content for Django shops."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from aigc_django.tracking.track import track

__all__ = ["__version__", "track"]


def __getattr__(name: str) -> Any:
    # Lazy, so that importing the package does not import models before apps are ready.
    if name == "track":
        from aigc_django.tracking.track import track

        return track
    raise AttributeError(name)
