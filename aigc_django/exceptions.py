"""Errors the app raises on purpose."""

from __future__ import annotations


class AigcError(Exception):
    """Base class of the app's own errors."""


class InvalidEvent(AigcError, ValueError):
    """An event failed validation; ``field`` names what was wrong ("" for the whole event)."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}" if field else message)
