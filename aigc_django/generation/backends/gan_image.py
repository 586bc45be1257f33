"""The ``gan`` image backend: backgrounds from the app's own conditional GAN.

Configure it under ``AIGC["IMAGE_BACKENDS"]``::

    "gan": {
        "BACKEND": "aigc_django.generation.backends.gan_image.GanImageBackend",
        "OPTIONS": {
            "PATH": None,        # a model directory; None: the active gan ModelArtifact
            "DEVICE": "auto",    # "auto" (CUDA when there is one), "cpu", "cuda:1", ...
            "FALLBACK": True,    # procedural backgrounds while no usable model exists
            "SMOOTHING": 1.0,    # blur after upsampling, 0 (none) to 4
            "GRAIN": 0.015,      # film grain after upsampling, 0 to 0.1
            "BATCH_SIZE": 64,    # images per generator call
        },
    }

Train a model first with ``manage.py aigc_train gan`` (or the ``aigc_django.train_gan_model``
task). The generator is loaded once per process, on the first ``generate``.

Each brief becomes one image: the noise is seeded with ``brief.seed``; the category is one of
the brief's categories (chosen by the seed; the unknown bucket for a category the model never
saw); the palette is three of the brief's colours (brand and segment colours; chosen and
ordered by the seed, the first being the dominant one). The generator draws at its native
resolution (64x64 by default); the square, less a border of 1/32 of its side (where the
convolutions saw zero padding), is cropped to the square root of the requested aspect ratio
and stretched the rest of the way (half the distortion each, so a 3:1 banner neither loses
most of the image nor squashes it), upsampled with bicubic interpolation to the requested
size, blurred in proportion to the upsampling (``SMOOTHING``) and given a faint seeded grain
(``GRAIN``) so that the upsampling does not show.

A missing, unreadable or mismatched model never breaks generation: with ``FALLBACK`` (the
default) the backend logs the error and draws procedural backgrounds (the ``builtin`` image
backend) instead, recording the reason in each image's notes (``gan_error``) and its
provenance (backend ``builtin``); it tries the model again when another one becomes active.
With ``FALLBACK: False`` the error (``GanModelMissing``, an ``ImproperlyConfigured``) is
raised and the generation job fails with it.
"""

from __future__ import annotations

import logging
import math
import random
from pathlib import Path
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from PIL import Image, ImageFilter

from aigc_django.generation.backends.base import GeneratedImage, ImageBackend, torch_device
from aigc_django.generation.backends.builtin_image import (
    FALLBACK_COLOURS,
    BuiltinImageBackend,
    parse_colour,
)
from aigc_django.generation.briefs import Brief

logger = logging.getLogger("aigc_django.generation")

OPTIONS = {"PATH", "DEVICE", "FALLBACK", "SMOOTHING", "GRAIN", "BATCH_SIZE"}


def _number(options: dict[str, Any], name: str, kind: type, low: float, high: float) -> Any:
    value = options.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ImproperlyConfigured(f"{name} must be a number, not {value!r}.")
    if kind is int and not float(value).is_integer():
        raise ImproperlyConfigured(f"{name} must be a whole number, not {value!r}.")
    if not low <= value <= high:
        raise ImproperlyConfigured(f"{name} must be within {low}..{high}, not {value!r}.")
    return kind(value)


def brief_palette(brief: Brief) -> list[tuple[int, int, int]]:
    """Three colours for the generator: the brief's (brand and segment) colours, chosen and
    ordered by the brief's seed; the first is the one the image is mostly made of."""
    colours = list(dict.fromkeys(c for c in (parse_colour(v) for v in brief.palette) if c))
    if not colours:
        colours = [parse_colour(v) for v in FALLBACK_COLOURS]  # type: ignore[misc]
    rng = random.Random(brief.seed)
    if len(colours) >= 3:
        return rng.sample(colours, 3)
    rng.shuffle(colours)
    while len(colours) < 3:
        colours.append(colours[-1])
    return colours


def brief_category(brief: Brief) -> str:
    """The category an image is drawn for: one of the brief's, chosen by its seed."""
    keys = [key for key, _ in brief.categories] or [p.category for p in brief.products]
    keys = [k for k in dict.fromkeys(keys) if k]
    return keys[brief.seed % len(keys)] if keys else ""


def fit_sample(
    sample: Image.Image, size: tuple[int, int], smoothing: float, grain: float, seed: int
) -> Image.Image:
    """A native-resolution square sample at ``size``: crop, stretch, upsample, blur, grain."""
    width, height = size
    # The outermost native pixels are left out: convolutions see zero padding there.
    margin = sample.width / 32
    side = sample.width - 2 * margin
    aspect = width / height
    crop_aspect = math.sqrt(aspect)
    if crop_aspect >= 1:
        crop_w, crop_h = side, side / crop_aspect
    else:
        crop_w, crop_h = side * crop_aspect, side
    left, top = margin + (side - crop_w) / 2, margin + (side - crop_h) / 2
    image = sample.resize(
        (width, height), Image.Resampling.BICUBIC, box=(left, top, left + crop_w, top + crop_h)
    )
    scale = max(width / crop_w, height / crop_h)
    radius = smoothing * scale / 4
    if radius >= 0.3:
        image = image.filter(ImageFilter.GaussianBlur(radius))
    if grain > 0:
        import numpy as np

        rng = np.random.default_rng(seed & 0xFFFF_FFFF)
        noise = rng.standard_normal((height, width), dtype=np.float32) * np.float32(grain * 255)
        pixels = np.asarray(image, dtype=np.float32) + noise[..., None]
        image = Image.fromarray(pixels.clip(0, 255).round().astype(np.uint8), "RGB")
    return image


class GanImageBackend(ImageBackend):
    """Backgrounds sampled from the app's conditional GAN (category and palette), batched."""

    name = "gan"

    def __init__(self, alias: str, options: dict[str, Any]) -> None:
        super().__init__(alias, options)
        where = f"AIGC IMAGE_BACKENDS[{alias!r}] OPTIONS"
        unknown = set(self.options) - OPTIONS
        if unknown:
            raise ImproperlyConfigured(
                f"{where} has unknown keys {sorted(unknown)} (known: {sorted(OPTIONS)})."
            )
        try:
            path = self.options.get("PATH")
            if path is not None and (not isinstance(path, (str, Path)) or not str(path)):
                raise ImproperlyConfigured(f"PATH must be a directory path, not {path!r}.")
            device = self.options.get("DEVICE", "auto")
            if not isinstance(device, str) or not device:
                raise ImproperlyConfigured(f"DEVICE must be a string like 'auto', not {device!r}.")
            fallback = self.options.get("FALLBACK", True)
            if not isinstance(fallback, bool):
                raise ImproperlyConfigured(f"FALLBACK must be True or False, not {fallback!r}.")
            smoothing = _number(self.options, "SMOOTHING", float, 0.0, 4.0)
            grain = _number(self.options, "GRAIN", float, 0.0, 0.1)
            batch_size = _number(self.options, "BATCH_SIZE", int, 1, 4096)
        except ImproperlyConfigured as exc:
            raise ImproperlyConfigured(f"{where}: {exc}") from None
        self.path = Path(path) if path is not None else None
        self.device = device
        self.fallback_allowed = fallback
        self.smoothing = 1.0 if smoothing is None else smoothing
        self.grain = 0.015 if grain is None else grain
        self.batch_size = 64 if batch_size is None else batch_size
        self.loaded: Any = None
        self.error = ""
        self.failed_path: Path | None = None
        self.fallback: BuiltinImageBackend | None = None

    # Loading --------------------------------------------------------------------------------

    def model_path(self) -> Path:
        """The model directory: OPTIONS["PATH"], else the active gan artifact's."""
        from aigc_django.generation.gan.model import GanModelMissing
        from aigc_django.models import ModelArtifact
        from aigc_django.profiles.build import model_dir

        if self.path is not None:
            return self.path
        artifact = (
            ModelArtifact.objects.filter(kind="gan", active=True).order_by("-version").first()
        )
        if artifact is None:
            raise GanModelMissing(model_dir() / "gan", "no active gan ModelArtifact")
        return Path(artifact.path)

    def load(self) -> None:
        from aigc_django.generation.gan.model import GanModelMissing, load

        path: Path | None = None
        try:
            path = self.model_path()
            self.loaded = load(path, torch_device(self.device))
            self.error, self.failed_path, self.fallback = "", None, None
        except GanModelMissing as exc:
            if not self.fallback_allowed:
                raise
            self.loaded, self.error, self.failed_path = None, str(exc), path
            logger.error(
                "Image backend %r: %s Drawing procedural backgrounds instead.", self.alias, exc
            )
            if self.fallback is None:
                self.fallback = BuiltinImageBackend(self.alias, {"DEVICE": self.device})

    def _retry_load(self) -> None:
        """In fallback, load again once a different model directory is the one to use."""
        from aigc_django.generation.gan.model import GanModelMissing

        try:
            path = self.model_path()
        except GanModelMissing:
            return
        if path != self.failed_path:
            self.load()

    def close(self) -> None:
        self.loaded = None
        self.fallback = None
        super().close()

    @property
    def model_name(self) -> str:
        return "gan"

    @property
    def model_version(self) -> str:
        return self.loaded.version if self.loaded is not None else ""

    # Generation -----------------------------------------------------------------------------

    def _generate(self, briefs: list[Brief], size: tuple[int, int]) -> list[GeneratedImage]:
        if self.loaded is None and self.fallback is not None:
            self._retry_load()
        if self.loaded is None:
            assert self.fallback is not None
            drawn = self.fallback.generate(briefs, size)
            for generated in drawn:
                generated.notes.update({"fallback": "builtin", "gan_error": self.error})
            return drawn
        return self._sample(briefs, size)

    def _sample(self, briefs: list[Brief], size: tuple[int, int]) -> list[GeneratedImage]:
        from aigc_django.generation.gan.data import palette_tensor
        from aigc_django.generation.gan.model import UNKNOWN, sample

        results: list[GeneratedImage] = []
        for start in range(0, len(briefs), self.batch_size):
            chunk = briefs[start : start + self.batch_size]
            palettes = [brief_palette(b) for b in chunk]
            categories = [brief_category(b) for b in chunk]
            indices = [self.loaded.category_index(c) for c in categories]
            import torch

            images = sample(
                self.loaded,
                [b.seed for b in chunk],
                indices,
                torch.stack([palette_tensor(p) for p in palettes]),
            )
            pixels = (images * 255 + 0.5).to(torch.uint8).permute(0, 2, 3, 1).numpy()
            for i, brief in enumerate(chunk):
                native = Image.fromarray(pixels[i], "RGB")
                fitted = fit_sample(native, size, self.smoothing, self.grain, brief.seed)
                notes = {
                    "category": categories[i] or None,
                    "category_known": indices[i] != UNKNOWN,
                    "palette": ["#{:02x}{:02x}{:02x}".format(*c) for c in palettes[i]],
                    "native": native.width,
                }
                results.append(GeneratedImage(fitted, self.provenance(brief, brief.seed), notes))
        return results
