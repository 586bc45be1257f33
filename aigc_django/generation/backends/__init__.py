"""Backend registry: ``AIGC["COPY_BACKENDS"]`` and ``AIGC["IMAGE_BACKENDS"]`` by alias.

Backends are created once per process and kept, so a worker loads each model once and reuses
it for every task. ``reset()`` drops them (settings changes, tests).
"""

from __future__ import annotations

import threading
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.utils.module_loading import import_string

from aigc_django.conf import aigc_settings
from aigc_django.generation.backends.base import (
    Backend,
    CopyBackend,
    CopyDraft,
    GeneratedImage,
    ImageBackend,
    Provenance,
    TransientBackendError,
)

__all__ = [
    "Backend",
    "CopyBackend",
    "CopyDraft",
    "GeneratedImage",
    "ImageBackend",
    "Provenance",
    "TransientBackendError",
    "backend_problems",
    "copy_backend",
    "image_backend",
    "reset",
]

_lock = threading.Lock()
_instances: dict[tuple[str, str], Backend] = {}

KINDS: dict[str, tuple[str, type[Backend]]] = {
    "copy": ("COPY_BACKENDS", CopyBackend),
    "image": ("IMAGE_BACKENDS", ImageBackend),
}


def _create(kind: str, alias: str) -> Backend:
    option, base = KINDS[kind]
    configs = getattr(aigc_settings, option)
    if alias not in configs:
        raise ImproperlyConfigured(
            f"AIGC {option} has no alias {alias!r} (aliases: {sorted(configs)})."
        )
    config = configs[alias]
    if not isinstance(config, dict) or not isinstance(config.get("BACKEND"), str):
        raise ImproperlyConfigured(f"AIGC {option}[{alias!r}] needs a BACKEND dotted path.")
    unknown = set(config) - {"BACKEND", "OPTIONS"}
    if unknown:
        raise ImproperlyConfigured(f"AIGC {option}[{alias!r}] has unknown keys {sorted(unknown)}.")
    try:
        cls = import_string(config["BACKEND"])
    except ImportError as exc:
        raise ImproperlyConfigured(
            f"AIGC {option}[{alias!r}] BACKEND {config['BACKEND']!r} cannot be imported: {exc}"
        ) from exc
    if not (isinstance(cls, type) and issubclass(cls, base)):
        raise ImproperlyConfigured(
            f"AIGC {option}[{alias!r}] BACKEND {config['BACKEND']!r} is not a {base.__name__}."
        )
    options = config.get("OPTIONS", {})
    if options is None:
        options = {}
    if not isinstance(options, dict):
        raise ImproperlyConfigured(f"AIGC {option}[{alias!r}] OPTIONS must be a dict.")
    return cls(alias, options)


def _get(kind: str, alias: str) -> Any:
    key = (kind, alias)
    backend = _instances.get(key)
    if backend is None:
        with _lock:
            backend = _instances.get(key)
            if backend is None:
                backend = _instances[key] = _create(kind, alias)
    return backend


def copy_backend(alias: str = "default") -> CopyBackend:
    """The copy backend configured under ``alias`` (created once per process)."""
    return _get("copy", alias)


def image_backend(alias: str = "default") -> ImageBackend:
    """The image backend configured under ``alias`` (created once per process)."""
    return _get("image", alias)


def backend_problems() -> list[tuple[str, str]]:
    """(option, message) for every backend that cannot be created; loads no model."""
    problems = []
    for kind, (option, _) in KINDS.items():
        configs = getattr(aigc_settings, option)
        if not isinstance(configs, dict) or "default" not in configs:
            problems.append((option, "must be a dict with a 'default' alias"))
            continue
        for alias in configs:
            try:
                _create(kind, alias)
            except ImproperlyConfigured as exc:
                problems.append((f"{option}[{alias!r}]", str(exc)))
    return problems


def reset() -> None:
    """Forget every backend instance (and free their models)."""
    with _lock:
        for backend in _instances.values():
            backend.close()
        _instances.clear()


def _on_setting_changed(*, setting: str, **kwargs: Any) -> None:
    if setting == "AIGC":
        reset()


setting_changed.connect(_on_setting_changed)
