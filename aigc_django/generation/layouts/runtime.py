"""The active layout model, loaded once per process, and sampling from it.

The composer asks :func:`active_sampler` for the model; it is ``None`` when layouts are
off (``AIGC["LAYOUT"]["ENABLED"]``), when no layout model was trained, or when the active
model's files cannot be loaded. A model that fails to load is logged once (per directory)
and remembered in :func:`status`; banners then use the composer's fixed layouts and
generation goes on.

The lookup of the active ``ModelArtifact`` is cached for :data:`RECHECK_SECONDS` (training
in this process clears the cache at once). Sampling runs on the CPU: the model is tiny,
and a composer that forks workers must not hold CUDA.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from dataclasses import dataclass, field

from aigc_django.generation.layouts.encoding import (
    Condition,
    NormBox,
    condition_vector,
    from_vector,
)

logger = logging.getLogger("aigc_django.generation")

RECHECK_SECONDS = 30.0
TEMPERATURE = 1.0


@dataclass
class LayoutSampler:
    """A loaded layout model that proposes layouts for conditions, seeded per banner."""

    model: object
    version: int
    path: str
    info: dict = field(default_factory=dict)

    def propose(
        self, conditions: list[Condition], seeds: list[int], candidates: int
    ) -> list[list[dict[str, NormBox]]]:
        """``candidates`` proposals per condition (a list per condition, in order).

        Each condition's proposals depend only on it and its seed, never on the rest of
        the batch, so a banner gets the same layout alone or in a batch: each condition is
        decoded on its own (the same tensor shapes every time; a matrix product over a
        batch of another size can differ in the last bits).
        """
        import torch

        model = self.model
        latent = model.config.latent  # type: ignore[attr-defined]
        found = []
        for condition, seed in zip(conditions, seeds, strict=True):
            generator = torch.Generator().manual_seed(int(seed) % (2**63))
            noise = torch.randn((candidates, latent), generator=generator)
            with torch.no_grad():
                context = model.context(  # type: ignore[attr-defined]
                    torch.tensor([condition_vector(condition)] * candidates, dtype=torch.float32),
                    torch.tensor([condition.segment] * candidates),
                )
                decoded = model.decode(noise * TEMPERATURE, context)  # type: ignore[attr-defined]
            names = condition.elements()
            found.append([from_vector(values, names) for values in decoded.tolist()])
        return found


_lock = threading.Lock()
_state: dict = {"checked": None, "key": None, "sampler": None}
_failed: dict[str, str] = {}


def reset() -> None:
    """Forget the loaded model (training and tests call this)."""
    with _lock:
        _state.update(checked=None, key=None, sampler=None)
        _failed.clear()


def _enabled() -> bool:
    from aigc_django.conf import aigc_settings

    return bool(aigc_settings.LAYOUT["ENABLED"])


def active_sampler() -> LayoutSampler | None:
    """The active layout model, or ``None`` (fixed layouts). Never raises."""
    try:
        if not _enabled():
            return None
        now = time.monotonic()
        with _lock:
            if _state["checked"] is not None and now - _state["checked"] < RECHECK_SECONDS:
                return _state["sampler"]
        from aigc_django.models import ModelArtifact

        row = (
            ModelArtifact.objects.filter(kind="layout", active=True)
            .order_by("-version")
            .values_list("version", "path")
            .first()
        )
    except Exception:  # no settings, no database, no table yet: fixed layouts
        return None
    with _lock:
        key = tuple(row) if row else None
        if key == _state["key"] and _state["checked"] is not None:
            _state["checked"] = now
            return _state["sampler"]
        sampler = _load(*key) if key else None
        _state.update(checked=now, key=key, sampler=sampler)
        return sampler


def _load(version: int, path: str) -> LayoutSampler | None:
    from aigc_django.generation.layouts.model import LayoutModelMissing, load

    if path in _failed:
        return None
    try:
        model, info = load(path, "cpu")
    except (LayoutModelMissing, ImportError) as exc:
        _failed[path] = str(exc)
        logger.error(
            "The active layout model v%s cannot be loaded (%s); banners use the fixed layouts.",
            version,
            exc,
        )
        return None
    return LayoutSampler(model, int(version), str(path), info)


def status() -> dict:
    """What the composer uses: the loaded model's version, and load errors seen."""
    sampler = _state["sampler"]
    return {
        "model": sampler.version if sampler is not None else None,
        "errors": dict(_failed),
    }


def banner_seed(condition: Condition, copy: dict[str, str], salt: int | None = None) -> int:
    """A stable seed for a banner: the same size, copy and segment give the same layout."""
    text = "\x1f".join(
        [
            repr(condition),
            *(f"{k}={' '.join(str(copy.get(k) or '').split())}" for k in sorted(copy)),
            str(salt if salt is not None else ""),
        ]
    )
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big") >> 1
