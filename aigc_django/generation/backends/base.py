"""The two backend contracts: copy and images. Both are batched and return provenance.

A backend is configured like Django's ``CACHES``::

    AIGC = {
        "COPY_BACKENDS": {
            "default": {
                "BACKEND": "aigc_django.generation.backends.builtin_copy.BuiltinCopyBackend",
                "OPTIONS": {},
            },
        },
        "IMAGE_BACKENDS": {
            "default": {
                "BACKEND": "aigc_django.generation.backends.builtin_image.BuiltinImageBackend",
                "OPTIONS": {},
            },
        },
    }

``__init__(alias, options)`` must validate the options and raise ``ImproperlyConfigured`` on
bad ones, without loading any model. Models are loaded lazily, once per process, on the first
call of ``generate`` (``load()``), and reused by every later task in that worker.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, ClassVar

from PIL import Image

from aigc_django.generation.briefs import Brief


@dataclass
class Provenance:
    """Which model made an output, from what, and how long it took."""

    backend: str
    model: str
    version: str
    seed: int
    brief_hash: str
    # Seconds per phase: "load", "generate", ... (the whole batch's time for batched phases).
    timings: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "backend": self.backend,
            "model": self.model,
            "version": self.version,
            "seed": self.seed,
            "brief_hash": self.brief_hash,
            "timings": {k: round(v, 4) for k, v in self.timings.items()},
        }


@dataclass
class CopyDraft:
    """Copy for one brief: one text per field of ``brief.fields``, placeholders filled."""

    fields: dict[str, str]
    provenance: Provenance
    # Extra facts the backend wants recorded (score, attempts, repairs, ...).
    notes: dict[str, Any] = field(default_factory=dict)


@dataclass
class GeneratedImage:
    """An image for one prompt at the requested size (RGB)."""

    image: Image.Image
    provenance: Provenance
    notes: dict[str, Any] = field(default_factory=dict)


class TransientBackendError(Exception):
    """A failure worth retrying later (a server timeout, a busy GPU)."""


class Backend(ABC):  # noqa: B024  (the kinds below declare _generate)
    """What copy and image backends share: options, lazy loading, timing."""

    # The short name recorded in provenance ("builtin", "transformers", ...).
    name: ClassVar[str] = ""

    def __init__(self, alias: str, options: dict[str, Any]) -> None:
        self.alias = alias
        self.options = dict(options)
        self._loaded = False

    def load(self) -> None:  # noqa: B027  (loading nothing is a valid default)
        """Load weights. Called once per process before the first ``generate``."""

    def ensure_loaded(self) -> float:
        """Load on first use; return the seconds that took (0 when already loaded)."""
        if self._loaded:
            return 0.0
        start = time.perf_counter()
        self.load()
        self._loaded = True
        return time.perf_counter() - start

    def close(self) -> None:
        """Free what ``load`` took (GPU memory); the next call loads again."""
        self._loaded = False

    @property
    def model_name(self) -> str:
        return self.name

    @property
    def model_version(self) -> str:
        return ""

    def provenance(self, brief: Brief, seed: int, **timings: float) -> Provenance:
        return Provenance(
            backend=self.name,
            model=self.model_name,
            version=self.model_version,
            seed=seed,
            brief_hash=brief.hash,
            timings=dict(timings),
        )


class CopyBackend(Backend):
    """Writes marketing copy. One draft per brief, in the same order.

    Subclasses implement ``_generate``; ``generate`` loads the model on first use, checks the
    batch and the results, and records the load and generate times in every provenance.
    """

    def generate(self, briefs: list[Brief]) -> list[CopyDraft]:
        """Copy for each brief (its ``seed`` decides the sampling), as one batch."""
        _check_briefs(briefs)
        load = self.ensure_loaded()
        start = time.perf_counter()
        drafts = self._generate(list(briefs))
        elapsed = time.perf_counter() - start
        if len(drafts) != len(briefs):
            raise ValueError(
                f"{type(self).__name__} returned {len(drafts)} drafts for {len(briefs)} briefs"
            )
        for brief, draft in zip(briefs, drafts, strict=True):
            missing = set(brief.fields) - set(draft.fields)
            if missing:
                raise ValueError(f"{type(self).__name__} left out fields {sorted(missing)}")
            draft.provenance.timings.setdefault("load", load)
            draft.provenance.timings.setdefault("generate", elapsed)
        return drafts

    @abstractmethod
    def _generate(self, briefs: list[Brief]) -> list[CopyDraft]:
        """The backend's own work: one draft per brief, in order, placeholders filled."""


class ImageBackend(Backend):
    """Makes images (backgrounds or whole scenes). One image per brief, in the same order."""

    def generate(self, briefs: list[Brief], size: tuple[int, int]) -> list[GeneratedImage]:
        """An RGB image of ``size`` (width, height) for each brief, seeded by ``brief.seed``."""
        _check_briefs(briefs)
        width, height = (int(v) for v in size)
        if not (0 < width <= 8192 and 0 < height <= 8192):
            raise ValueError(f"image size must be within 1..8192 pixels, not {size!r}")
        load = self.ensure_loaded()
        start = time.perf_counter()
        images = self._generate(list(briefs), (width, height))
        elapsed = time.perf_counter() - start
        if len(images) != len(briefs):
            raise ValueError(
                f"{type(self).__name__} returned {len(images)} images for {len(briefs)} briefs"
            )
        for generated in images:
            if generated.image.size != (width, height):
                generated.image = generated.image.resize((width, height))
            if generated.image.mode != "RGB":
                generated.image = generated.image.convert("RGB")
            generated.provenance.timings.setdefault("load", load)
            generated.provenance.timings.setdefault("generate", elapsed)
        return images

    @abstractmethod
    def _generate(self, briefs: list[Brief], size: tuple[int, int]) -> list[GeneratedImage]:
        """The backend's own work: one image per brief, in order."""


def _check_briefs(briefs: list[Brief]) -> None:
    if not briefs:
        raise ValueError("generate() needs at least one brief")
    for brief in briefs:
        if not isinstance(brief, Brief):
            raise TypeError(f"generate() takes Brief objects, not {type(brief).__name__}")


@contextmanager
def timed(timings: dict[str, float], phase: str) -> Iterator[None]:
    """Add the seconds spent inside the block to ``timings[phase]``."""
    start = time.perf_counter()
    try:
        yield
    finally:
        timings[phase] = timings.get(phase, 0.0) + time.perf_counter() - start


def is_out_of_memory(exc: BaseException) -> bool:
    """Whether an exception is a (CUDA or CPU) out-of-memory error."""
    try:
        import torch

        if isinstance(exc, torch.OutOfMemoryError):
            return True
    except (ImportError, AttributeError):
        pass
    return isinstance(exc, MemoryError) or "out of memory" in str(exc).lower()


@contextmanager
def cpu_threads(count: int | None, device: Any) -> Iterator[int | None]:
    """Run torch on ``count`` CPU threads inside the block (None: torch's setting; ignored
    off the CPU), restoring the setting afterwards. Yields the threads used on the CPU, else
    None."""
    import torch

    before = torch.get_num_threads()
    on_cpu = torch.device(device).type == "cpu"
    if count is not None and on_cpu:
        torch.set_num_threads(max(1, int(count)))
    try:
        yield torch.get_num_threads() if on_cpu else None
    finally:
        torch.set_num_threads(before)


def torch_device(option: str | None = "auto") -> str:
    """ "auto" picks CUDA when torch sees a GPU; any other value is used as given."""
    import torch

    if option in (None, "", "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    return str(option)
