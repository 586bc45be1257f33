"""The builtin image backend: calm procedural backgrounds, rendered with torch in batches.

Every brief of a call becomes one image of one tensor batch ``(batch, 3, height, width)``:
a soft linear gradient between two colours of the brief's palette and the brand colours,
plus (by style) soft blobs of a third colour, faint diagonal bands and a low-frequency
grain. All random choices come from a CPU ``torch.Generator`` seeded with ``brief.seed``,
so the same brief and seed give the same pixels on the same device, and different seeds
give different images. The backgrounds are kept low in contrast so that text can sit on
them; the banner composer still measures every text box and adds a scrim when needed.

OPTIONS:

* ``DEVICE``: ``"auto"`` (CUDA when torch sees a GPU), ``"cpu"``, ``"cuda"``, ``"cuda:1"``...
* ``STYLE``: ``"auto"`` (chosen per brief by its seed), ``"gradient"``, ``"blobs"`` or
  ``"bands"``.
* ``GRAIN``: strength of the low-frequency grain, 0 to 0.1 (default 0.02).
* ``MAX_BATCH_PIXELS``: pixels per tensor batch (default 16 million); a larger call is
  rendered in several batches of whole images, to bound memory.
"""

from __future__ import annotations

import math
import re
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from PIL import Image

from aigc_django.generation.backends.base import GeneratedImage, ImageBackend, torch_device
from aigc_django.generation.briefs import Brief

STYLES = ("auto", "gradient", "blobs", "bands")
HEX_COLOUR = re.compile(r"^#?([0-9a-fA-F]{6}|[0-9a-fA-F]{3})$")
# Used when neither the brief nor the brand has any usable colour.
FALLBACK_COLOURS = ["#1f2937", "#f59e0b", "#f3f4f6"]
BLOBS = 4
# The longest side (pixels) at which images are computed before the final upsampling.
WORK_SIDE = 320


def parse_colour(value: str) -> tuple[int, int, int] | None:
    """``"#rrggbb"`` or ``"#rgb"`` as an (r, g, b) tuple; ``None`` when it is not one."""
    if not isinstance(value, str):
        return None
    match = HEX_COLOUR.match(value.strip())
    if not match:
        return None
    digits = match.group(1)
    if len(digits) == 3:
        digits = "".join(c * 2 for c in digits)
    return tuple(int(digits[i : i + 2], 16) for i in (0, 2, 4))  # type: ignore[return-value]


class BuiltinImageBackend(ImageBackend):
    """Procedural backgrounds from the brief's palette and the brand colours (torch)."""

    name = "builtin"

    def __init__(self, alias: str, options: dict[str, Any]) -> None:
        super().__init__(alias, options)
        unknown = set(self.options) - {"DEVICE", "STYLE", "GRAIN", "MAX_BATCH_PIXELS"}
        if unknown:
            raise ImproperlyConfigured(
                f"Image backend {alias!r}: unknown OPTIONS {sorted(unknown)} "
                "(known: DEVICE, STYLE, GRAIN, MAX_BATCH_PIXELS)."
            )
        device = self.options.get("DEVICE", "auto")
        if device is not None and not isinstance(device, str):
            raise ImproperlyConfigured(f"Image backend {alias!r}: DEVICE must be a string.")
        if device not in (None, "", "auto") and not re.fullmatch(r"cpu|cuda(:\d+)?|mps", device):
            raise ImproperlyConfigured(
                f"Image backend {alias!r}: DEVICE {device!r} is not 'auto', 'cpu', "
                "'cuda', 'cuda:N' or 'mps'."
            )
        self.style = self.options.get("STYLE", "auto")
        if self.style not in STYLES:
            raise ImproperlyConfigured(
                f"Image backend {alias!r}: STYLE {self.style!r} is not one of {list(STYLES)}."
            )
        grain = self.options.get("GRAIN", 0.02)
        if isinstance(grain, bool) or not isinstance(grain, int | float) or not 0 <= grain <= 0.1:
            raise ImproperlyConfigured(
                f"Image backend {alias!r}: GRAIN must be a number from 0 to 0.1."
            )
        self.grain = float(grain)
        budget = self.options.get("MAX_BATCH_PIXELS", 16_000_000)
        if isinstance(budget, bool) or not isinstance(budget, int) or budget < 1:
            raise ImproperlyConfigured(
                f"Image backend {alias!r}: MAX_BATCH_PIXELS must be a positive integer."
            )
        self.max_batch_pixels = budget
        self.device = ""

    @property
    def model_name(self) -> str:
        return f"procedural-{self.style}"

    @property
    def model_version(self) -> str:
        return "1"

    def load(self) -> None:
        self.device = torch_device(self.options.get("DEVICE", "auto"))

    def _generate(self, briefs: list[Brief], size: tuple[int, int]) -> list[GeneratedImage]:
        width, height = size
        per_batch = max(1, self.max_batch_pixels // (width * height))
        images: list[Image.Image] = []
        for start in range(0, len(briefs), per_batch):
            images += self.render(briefs[start : start + per_batch], size)
        return [
            GeneratedImage(image, self.provenance(brief, brief.seed), {"style": style})
            for brief, (image, style) in zip(briefs, images, strict=True)
        ]

    def render(self, briefs: list[Brief], size: tuple[int, int]) -> list[tuple[Image.Image, str]]:
        """Render the briefs as one tensor batch; (image, style used) per brief."""
        import torch

        out_width, out_height = size
        # Everything here is low-frequency: render at most WORK_SIDE pixels on the longer side
        # and upsample smoothly, which costs one interpolation at full size.
        scale = min(1.0, WORK_SIDE / max(size))
        width, height = max(2, round(out_width * scale)), max(2, round(out_height * scale))
        device = self.device or torch_device(self.options.get("DEVICE", "auto"))
        params = [self._params(brief) for brief in briefs]
        batch = len(briefs)

        def stack(key: str) -> torch.Tensor:
            return torch.stack([p[key] for p in params]).to(device)

        c0, c1, c2 = stack("c0"), stack("c1"), stack("c2")  # (B, 3)
        angle, blob_weight, band_weight = stack("angle"), stack("blobs"), stack("bands")
        ys = torch.linspace(0.0, 1.0, height, device=device).view(1, height, 1)
        xs = torch.linspace(0.0, 1.0, width, device=device).view(1, 1, width)
        aspect = width / height
        # Gradient along a seeded direction, normalised to 0..1 over the image.
        dx, dy = torch.cos(angle).view(batch, 1, 1), torch.sin(angle).view(batch, 1, 1)
        proj = dx * xs * aspect + dy * ys
        low = torch.minimum(torch.zeros_like(dx), dx * aspect) + torch.minimum(
            torch.zeros_like(dy), dy
        )
        span = (dx * aspect).abs() + dy.abs()
        t = ((proj - low) / span).clamp(0, 1)
        t = t * t * (3 - 2 * t)  # smoothstep: softer ends
        image = c0.view(batch, 3, 1, 1) + (c1 - c0).view(batch, 3, 1, 1) * t.unsqueeze(1)
        # Soft blobs of the accent colour.
        centres, radii, strengths = stack("centres"), stack("radii"), stack("strengths")
        alpha = torch.zeros(batch, height, width, device=device)
        for k in range(BLOBS):
            cx = centres[:, k, 0].view(batch, 1, 1) * aspect
            cy = centres[:, k, 1].view(batch, 1, 1)
            r = radii[:, k].view(batch, 1, 1)
            d2 = (xs * aspect - cx) ** 2 + (ys - cy) ** 2
            alpha = torch.maximum(alpha, strengths[:, k].view(batch, 1, 1) * torch.exp(-d2 / r**2))
        alpha = alpha * blob_weight.view(batch, 1, 1)
        image = image + (c2.view(batch, 3, 1, 1) - image) * alpha.unsqueeze(1)
        # Faint diagonal bands: a lighter and darker wash along a second direction.
        band_angle, band_freq, band_phase = stack("band_angle"), stack("band_freq"), stack("phase")
        bx = torch.cos(band_angle).view(batch, 1, 1)
        by = torch.sin(band_angle).view(batch, 1, 1)
        wave = torch.sin(
            (bx * xs * aspect + by * ys) * band_freq.view(batch, 1, 1) * 2 * math.pi
            + band_phase.view(batch, 1, 1)
        )
        image = image * (1 + 0.06 * band_weight.view(batch, 1, 1, 1) * wave.unsqueeze(1))
        # Low-frequency grain, drawn at a coarse scale and smoothly upsampled.
        if self.grain > 0:
            grain = stack("grain")  # (B, 3, gh, gw)
            grain = torch.nn.functional.interpolate(
                grain, size=(height, width), mode="bicubic", align_corners=False
            )
            image = image + self.grain * grain.mean(dim=1, keepdim=True)
        upsample = (width, height) != (out_width, out_height)
        if upsample and image.device.type != "cpu":
            image = torch.nn.functional.interpolate(
                image, size=(out_height, out_width), mode="bilinear", align_corners=True
            )
            upsample = False
        pixels = (image.clamp(0, 1) * 255 + 0.5).to(torch.uint8).permute(0, 2, 3, 1)
        pixels = pixels.contiguous().cpu().numpy()
        results = []
        for i in range(batch):
            picture = Image.fromarray(pixels[i], "RGB")
            if upsample:
                # On the CPU, Pillow's resize is several times faster than torch's.
                picture = picture.resize((out_width, out_height), Image.Resampling.BILINEAR)
            results.append((picture, params[i]["style"]))
        return results

    def _params(self, brief: Brief) -> dict[str, Any]:
        """The seeded random choices for one brief (on the CPU, device-independent)."""
        import torch

        from aigc_django.conf import aigc_settings

        generator = torch.Generator().manual_seed(int(brief.seed) & 0x7FFF_FFFF_FFFF_FFFF)

        def uniform(*shape: int, low: float = 0.0, high: float = 1.0) -> torch.Tensor:
            return low + (high - low) * torch.rand(*shape, generator=generator)

        colours = [c for c in (parse_colour(v) for v in brief.palette) if c]
        brand = aigc_settings.BRAND.get("COLORS") or []
        colours += [c for c in (parse_colour(v) for v in brand) if c and c not in colours]
        if len(colours) < 2:
            colours += [parse_colour(v) for v in FALLBACK_COLOURS]  # type: ignore[misc]
        palette = torch.tensor(colours, dtype=torch.float32) / 255.0
        order = torch.randperm(len(colours), generator=generator)
        base, other, accent = palette[order[0]], palette[order[1]], palette[order[2 % len(order)]]
        # Keep the ranges narrow: the second colour only part of the way to another one, the
        # base lifted or lowered to a calm light or dark tone.
        lightness = float((base * torch.tensor([0.2126, 0.7152, 0.0722])).sum())
        tone = 0.9 if lightness > 0.45 else 0.12
        base = base + (tone - base) * uniform(1, low=0.35, high=0.65)
        c1 = base + (other - base) * uniform(1, low=0.18, high=0.35)
        c2 = base + (accent - base) * 0.5
        style = self.style
        if style == "auto":
            style = STYLES[1 + int(torch.randint(0, 3, (1,), generator=generator))]
        return {
            "style": style,
            "c0": base,
            "c1": c1,
            "c2": c2,
            "angle": uniform(1, high=2 * math.pi)[0],
            "blobs": torch.tensor(1.0 if style == "blobs" else 0.35),
            "bands": torch.tensor(1.0 if style == "bands" else 0.0),
            "centres": uniform(BLOBS, 2),
            "radii": uniform(BLOBS, low=0.15, high=0.45),
            "strengths": uniform(BLOBS, low=0.25, high=0.6),
            "band_angle": uniform(1, low=0.5, high=1.1)[0],
            "band_freq": uniform(1, low=2.0, high=5.0)[0],
            "phase": uniform(1, high=2 * math.pi)[0],
            "grain": torch.randn(3, 6, 12, generator=generator),
        }
