"""Images from any diffusers text-to-image pipeline in a local directory.

Configure it like::

    "IMAGE_BACKENDS": {
        "default": {
            "BACKEND": "aigc_django.generation.backends.diffusers_image.DiffusersImageBackend",
            "OPTIONS": {"PATH": "/models/sd-turbo", "STEPS": 2, "GUIDANCE_SCALE": 0.0},
        },
    }

The pipeline loads from ``PATH`` only (``local_files_only``: nothing is downloaded) with
``AutoPipelineForText2Image`` (``DiffusionPipeline`` for pipelines it does not know), lazily,
once per worker process. Stable Diffusion 1.x/2.x, SDXL, SD-Turbo, SD3 and FLUX directories
saved with ``save_pretrained`` all work.

Sizes: a pipeline draws best near the resolution it was trained at, so each batch is drawn at
about the pipeline's native area (``RESOLUTION`` squared, by default the pipeline's own:
512 for SD 1.5, 1024 for SDXL and FLUX) with the aspect ratio of the requested size, in
multiples the pipeline accepts, at most ``MAX_SIDE`` on the long side; each image is then
scaled to cover the requested size and centre-cropped to it.

Determinism: every brief gets its own CPU ``torch.Generator`` seeded with ``brief.seed``,
passed to the pipeline as a list, so each image's starting noise depends only on its seed:
not on the batch it is in, nor on the device (noise drawn on the CPU is the same everywhere).
The same seed gives the same image on the same device and dtype; different batch
compositions can change pixels by floating-point rounding only.
"""

from __future__ import annotations

import gc
import inspect
import math
import os
from pathlib import Path
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from PIL import Image, ImageOps

from aigc_django.generation.backends.base import GeneratedImage, ImageBackend, torch_device
from aigc_django.generation.backends.llm import (
    check_dtype,
    files_version,
    missing_extra,
    option_checker,
    resolve_dtype,
)
from aigc_django.generation.briefs import Brief

OPTIONS = {
    "PATH",
    "DEVICE",
    "DTYPE",
    "STEPS",
    "GUIDANCE_SCALE",
    "NEGATIVE_PROMPT",
    "BATCH_SIZE",
    "ENABLE_CPU_OFFLOAD",
    "RESOLUTION",
    "MAX_SIDE",
}
VERSION_SUFFIXES = (".json", ".safetensors", ".bin", ".txt", ".model", ".ckpt")


def plan_size(
    target: tuple[int, int], native: int, multiple: int, max_side: int
) -> tuple[int, int]:
    """The (width, height) to draw at for a ``target`` size.

    About ``native``² pixels with the target's aspect ratio, each side a multiple of
    ``multiple`` (at least one multiple), the long side at most ``max_side``.
    """
    width, height = target
    aspect = width / height
    draw_w = math.sqrt(native * native * aspect)
    draw_h = draw_w / aspect
    longest = max(draw_w, draw_h)
    if longest > max_side:
        draw_w, draw_h = draw_w * max_side / longest, draw_h * max_side / longest

    def snap(value: float) -> int:
        return max(multiple, round(value / multiple) * multiple)

    draw_w, draw_h = snap(draw_w), snap(draw_h)
    limit = max(multiple, max_side // multiple * multiple)
    return min(draw_w, limit), min(draw_h, limit)


class DiffusersImageBackend(ImageBackend):
    """Backgrounds from a local diffusers text-to-image pipeline: batched, seeded, bf16 on GPU.

    OPTIONS: ``PATH`` (required: the pipeline directory), ``DEVICE`` ("auto"), ``DTYPE``
    ("auto": bfloat16 on CUDA, float32 elsewhere), ``STEPS`` (30), ``GUIDANCE_SCALE`` (None:
    the pipeline's default; 0 for SD-Turbo), ``NEGATIVE_PROMPT`` (""), ``BATCH_SIZE`` (4:
    images per pipeline call), ``ENABLE_CPU_OFFLOAD`` (False: keep only the running part on
    the GPU, for GPUs too small for the whole pipeline), ``RESOLUTION`` (None: the
    pipeline's native side), ``MAX_SIDE`` (1536).
    """

    name = "diffusers"

    def __init__(self, alias: str, options: dict[str, Any]) -> None:
        super().__init__(alias, options)
        check = option_checker("diffusers", alias, self.options, OPTIONS)
        path = self.options.get("PATH")
        if not isinstance(path, str | os.PathLike) or not str(path):
            raise ImproperlyConfigured(
                f"diffusers backend {alias!r}: OPTIONS['PATH'] must name the local pipeline "
                f"directory, not {path!r}."
            )
        self.path = Path(path)
        self.device_option = check("DEVICE", str, "auto")
        self.dtype_option = check_dtype("diffusers", alias, self.options.get("DTYPE", "auto"))
        self.steps = check("STEPS", int, 30, 1, 1000)
        self.guidance_scale = check("GUIDANCE_SCALE", (int, float), None, 0)
        self.negative_prompt = check("NEGATIVE_PROMPT", str, "")
        self.batch_size = check("BATCH_SIZE", int, 4, 1, 256)
        self.cpu_offload = check("ENABLE_CPU_OFFLOAD", bool, False)
        self.resolution = check("RESOLUTION", int, None, 64, 4096)
        self.max_side = check("MAX_SIDE", int, 1536, 64, 8192)
        self.pipeline: Any = None
        self.device = ""
        self._version = ""
        self._native = 512
        self._multiple = 64

    def load(self) -> None:
        try:
            import diffusers
        except ImportError as exc:
            raise missing_extra("diffusers", "gpu") from exc
        if not self.path.is_dir():
            raise ImproperlyConfigured(
                f"diffusers backend {self.alias!r}: the pipeline directory {str(self.path)!r} "
                "does not exist. Put a pipeline saved with save_pretrained there "
                "(model_index.json and its parts); nothing is downloaded."
            )
        if not (self.path / "model_index.json").is_file():
            raise ImproperlyConfigured(
                f"diffusers backend {self.alias!r}: {str(self.path)!r} has no "
                "model_index.json; is it a saved diffusers pipeline directory?"
            )
        self.device = torch_device(self.device_option)
        if self.cpu_offload and not self.device.startswith("cuda"):
            raise ImproperlyConfigured(
                f"diffusers backend {self.alias!r}: ENABLE_CPU_OFFLOAD needs a CUDA device, "
                f"not {self.device!r}."
            )
        dtype = resolve_dtype(self.dtype_option, self.device)
        from diffusers.pipelines import pipeline_utils

        # Newer diffusers take ``dtype`` and deprecate ``torch_dtype``; older take only the latter.
        dtype_key = "dtype" if hasattr(pipeline_utils, "_resolve_dtype") else "torch_dtype"
        kwargs = {"local_files_only": True, dtype_key: dtype}
        try:
            pipeline = diffusers.AutoPipelineForText2Image.from_pretrained(str(self.path), **kwargs)
        except ValueError:
            # A pipeline class AutoPipeline has no text-to-image mapping for.
            pipeline = diffusers.DiffusionPipeline.from_pretrained(str(self.path), **kwargs)
        parameters = inspect.signature(pipeline.__call__).parameters
        if self.negative_prompt and "negative_prompt" not in parameters:
            raise ImproperlyConfigured(
                f"diffusers backend {self.alias!r}: {type(pipeline).__name__} takes no "
                "negative prompt; remove NEGATIVE_PROMPT."
            )
        pipeline.set_progress_bar_config(disable=True)
        if self.cpu_offload:
            pipeline.enable_model_cpu_offload(device=self.device)
        else:
            pipeline.to(self.device)
        self.pipeline = pipeline
        self._native, self._multiple = self._native_size(pipeline)
        files = [
            p for p in self.path.rglob("*") if p.is_file() and p.name.endswith(VERSION_SUFFIXES)
        ]
        # Relative paths go in too: every part has its own config.json.
        names = "\n".join(sorted(str(p.relative_to(self.path)) for p in files))
        self._version = files_version(files, extra=names.encode())

    def _native_size(self, pipeline: Any) -> tuple[int, int]:
        """(native side in pixels, size multiple) for a pipeline."""
        scale = int(getattr(pipeline, "vae_scale_factor", 8) or 8)
        sample = getattr(pipeline, "default_sample_size", None)
        for part in ("unet", "transformer"):
            if sample is None and getattr(pipeline, part, None) is not None:
                config_size = getattr(getattr(pipeline, part).config, "sample_size", None)
                if isinstance(config_size, int):
                    sample = config_size
        native = self.resolution or (int(sample) * scale if sample else 512)
        # Latents are halved by the UNet's downsampling (or packed 2x2 by FLUX): multiples of
        # 8 latent pixels are safe for every pipeline.
        return native, scale * 8

    def close(self) -> None:
        self.pipeline = None
        gc.collect()
        try:
            import torch

            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        except ImportError:
            pass
        super().close()

    @property
    def model_name(self) -> str:
        return self.path.name

    @property
    def model_version(self) -> str:
        return self._version

    def draw_size(self, size: tuple[int, int]) -> tuple[int, int]:
        """The size the pipeline draws at for a requested ``size`` (after loading)."""
        return plan_size(size, self._native, self._multiple, self.max_side)

    def _generate(self, briefs: list[Brief], size: tuple[int, int]) -> list[GeneratedImage]:
        import torch

        draw_w, draw_h = self.draw_size(size)
        images: list[GeneratedImage] = []
        for start in range(0, len(briefs), self.batch_size):
            chunk = briefs[start : start + self.batch_size]
            kwargs: dict[str, Any] = {
                "prompt": [b.image_prompt() for b in chunk],
                "width": draw_w,
                "height": draw_h,
                "num_inference_steps": self.steps,
                # CPU generators: the same noise for a seed on every device and in any batch.
                "generator": [torch.Generator(device="cpu").manual_seed(b.seed) for b in chunk],
                "output_type": "pil",
            }
            if self.negative_prompt:
                kwargs["negative_prompt"] = [self.negative_prompt] * len(chunk)
            if self.guidance_scale is not None:
                kwargs["guidance_scale"] = float(self.guidance_scale)
            with torch.inference_mode():
                result = self.pipeline(**kwargs)
            flags = getattr(result, "nsfw_content_detected", None) or [None] * len(chunk)
            for brief, image, flagged in zip(chunk, result.images, flags, strict=True):
                fitted = ImageOps.fit(image.convert("RGB"), size, Image.Resampling.LANCZOS)
                notes: dict[str, Any] = {
                    "pipeline": type(self.pipeline).__name__,
                    "drawn_at": [draw_w, draw_h],
                    "steps": self.steps,
                    "prompt": brief.image_prompt(),
                }
                if flagged is not None:
                    notes["nsfw_detected"] = bool(flagged)
                images.append(GeneratedImage(fitted, self.provenance(brief, brief.seed), notes))
        return images
