"""The image GAN: a conditional DCGAN-class generator and discriminator, saved as
config JSON + safetensors.

Conditioning is the same for both networks: a product category (an embedding; index 0 is
the unknown bucket, used for categories the model never saw and for briefs without one) and
a palette of three colours (nine numbers in -1..1, most dominant colour first).

- ``Generator``: noise and condition -> a 4x4 map, then up-sampling blocks (bilinear,
  3x3 convolution, leaky ReLU, pixel norm, FiLM from the condition) to the native
  resolution, then a 1x1 convolution to RGB in -1..1. Pixel norm instead of batch norm keeps
  each sample a function of its own noise only, so a seed gives the same image whatever
  else is in the batch.
- ``Discriminator``: spectral-normalised strided convolutions, then a projection head (the
  condition's embeddings dotted with the pooled features, Miyato & Koyama 2018).

A model directory holds ``config.json`` (the architecture, the category vocabulary, the
version and the training report) and ``model.safetensors`` (the EMA generator's weights:
the discriminator is only needed for training and is not saved).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import torch
from django.core.exceptions import ImproperlyConfigured
from torch import nn
from torch.nn import functional as F
from torch.nn.utils import spectral_norm

CONFIG = "config.json"
WEIGHTS = "model.safetensors"
FILES = (CONFIG, WEIGHTS)
PALETTE_COLOURS = 3
UNKNOWN = 0  # the category index of the unknown bucket


class GanModelMissing(ImproperlyConfigured):
    """No usable trained GAN where one was expected (missing, unreadable or mismatched)."""

    def __init__(self, directory: str | Path, detail: str = "") -> None:
        self.directory = str(directory)
        message = f"No usable image GAN in {self.directory}"
        if detail:
            message += f" ({detail})"
        super().__init__(message + ": run `manage.py aigc_train gan` to train one.")


@dataclass(frozen=True)
class GanConfig:
    """The networks' shape. ``resolution`` is a power of two from 16 to 128."""

    categories: int  # embedding rows, the unknown bucket included
    resolution: int = 64
    z_dim: int = 64
    embed_dim: int = 16
    channels: int = 8  # width of the last (highest-resolution) generator block; doubles down
    max_channels: int = 128

    def __post_init__(self) -> None:
        if self.resolution not in (16, 32, 64, 128):
            raise ValueError("resolution must be 16, 32, 64 or 128")
        if self.categories < 1:
            raise ValueError("categories must be at least 1 (the unknown bucket)")

    @property
    def cond_dim(self) -> int:
        return self.embed_dim + 3 * PALETTE_COLOURS

    @property
    def blocks(self) -> int:
        """Up-sampling blocks from 4x4 to the native resolution."""
        return int(math.log2(self.resolution)) - 2

    def widths(self) -> list[int]:
        """Channels at 4x4, 8x8, ..., the native resolution."""
        return [
            min(self.max_channels, self.channels * 2 ** (self.blocks - i))
            for i in range(self.blocks + 1)
        ]

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GanConfig:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


class PixelNorm(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.pow(2).mean(dim=1, keepdim=True) + 1e-8)


class UpBlock(nn.Module):
    """x2 bilinear up-sampling, 3x3 conv, leaky ReLU, pixel norm, FiLM from the condition."""

    def __init__(self, cin: int, cout: int, cond_dim: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, padding=1)
        self.norm = PixelNorm()
        self.film = nn.Linear(cond_dim, 2 * cout)
        nn.init.zeros_(self.film.weight)
        nn.init.zeros_(self.film.bias)

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        # Bilinear, not nearest: nearest-neighbour up-sampling leaves a grid that shows once
        # a 64-pixel sample is scaled to a banner.
        x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
        x = self.norm(F.leaky_relu(self.conv(x), 0.2))
        gamma, beta = self.film(cond).unsqueeze(-1).unsqueeze(-1).chunk(2, dim=1)
        return x * (1 + gamma) + beta


class Generator(nn.Module):
    """Images in -1..1, ``[batch, 3, resolution, resolution]``, from noise and condition."""

    def __init__(self, config: GanConfig) -> None:
        super().__init__()
        self.config = config
        widths = config.widths()
        self.embed = nn.Embedding(config.categories, config.embed_dim)
        self.stem = nn.Linear(config.z_dim + config.cond_dim, widths[0] * 16)
        self.norm = PixelNorm()
        self.blocks = nn.ModuleList(
            UpBlock(widths[i], widths[i + 1], config.cond_dim) for i in range(config.blocks)
        )
        self.to_rgb = nn.Conv2d(widths[-1], 3, 1)

    def condition(self, categories: torch.Tensor, palettes: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.embed(categories), palettes.flatten(1)], dim=1)

    def forward(
        self, z: torch.Tensor, categories: torch.Tensor, palettes: torch.Tensor
    ) -> torch.Tensor:
        cond = self.condition(categories, palettes)
        x = self.stem(torch.cat([z, cond], dim=1)).view(z.shape[0], -1, 4, 4)
        x = self.norm(F.leaky_relu(x, 0.2))
        for block in self.blocks:
            x = block(x, cond)
        return torch.tanh(self.to_rgb(x))

    def parameter_count(self) -> int:
        return sum(p.numel() for p in self.parameters())


class Discriminator(nn.Module):
    """A realness score per image (hinge loss), spectral norm on every layer."""

    def __init__(self, config: GanConfig) -> None:
        super().__init__()
        widths = list(reversed(config.widths()))  # native resolution first
        # The first layer already halves the resolution (the native-size layers are the
        # costly ones on a CPU).
        layers: list[nn.Module] = [
            spectral_norm(nn.Conv2d(3, widths[1], 4, stride=2, padding=1)),
            nn.LeakyReLU(0.2),
        ]
        for i in range(1, config.blocks):
            layers += [
                spectral_norm(nn.Conv2d(widths[i], widths[i + 1], 4, stride=2, padding=1)),
                nn.LeakyReLU(0.2),
            ]
        self.features = nn.Sequential(*layers)
        width = widths[-1]
        self.out = spectral_norm(nn.Linear(width, 1))
        self.embed = spectral_norm(nn.Embedding(config.categories, width))
        self.palette = spectral_norm(nn.Linear(3 * PALETTE_COLOURS, width))

    def forward(
        self, images: torch.Tensor, categories: torch.Tensor, palettes: torch.Tensor
    ) -> torch.Tensor:
        h = self.features(images).sum(dim=(2, 3))
        projection = (self.embed(categories) * h).sum(1) + (
            self.palette(palettes.flatten(1)) * h
        ).sum(1)
        return self.out(h).squeeze(1) + projection


@dataclass
class LoadedGan:
    """A generator ready to sample from, with its category vocabulary and saved facts."""

    generator: Generator
    categories: list[str]  # index i + 1 is categories[i]; 0 is the unknown bucket
    info: dict[str, Any]
    path: Path

    @property
    def version(self) -> str:
        return str(self.info.get("version", ""))

    @property
    def device(self) -> torch.device:
        return self.generator.stem.weight.device

    def category_index(self, key: str | None) -> int:
        try:
            return self.categories.index(key) + 1 if key else UNKNOWN
        except ValueError:
            return UNKNOWN


@torch.no_grad()
def sample(
    loaded: LoadedGan,
    seeds: list[int],
    categories: list[int],
    palettes: torch.Tensor,
) -> torch.Tensor:
    """Images in 0..1 (``[batch, 3, res, res]``, on the CPU) for seeds and conditions.

    Each image's noise comes from a CPU generator seeded with its own seed, so an image
    depends on its seed and condition only, not on the batch it is in nor on the device.
    """
    z_dim = loaded.generator.config.z_dim
    z = torch.stack(
        [
            torch.randn(z_dim, generator=torch.Generator().manual_seed(int(s) & 0x7FFF_FFFF_FFFF))
            for s in seeds
        ]
    )
    device = loaded.device
    images = loaded.generator(
        z.to(device),
        torch.tensor(categories, dtype=torch.long, device=device),
        palettes.to(device=device, dtype=torch.float32),
    )
    return ((images.float().cpu() + 1) / 2).clamp(0, 1)


def save(generator: Generator, categories: list[str], directory: Path, info: dict) -> None:
    """Write the two files of a model directory (created when missing)."""
    from safetensors.torch import save_file

    directory.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in generator.state_dict().items()}
    save_file(state, str(directory / WEIGHTS))
    (directory / CONFIG).write_text(
        json.dumps(
            {"model": asdict(generator.config), "categories": categories, **info},
            indent=2,
            ensure_ascii=False,
        )
    )


def load(directory: str | Path, device: str | torch.device = "cpu") -> LoadedGan:
    """A saved generator in eval mode on ``device``; ``GanModelMissing`` when unusable."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(directory)
    if not path.is_dir():
        raise GanModelMissing(path, "the directory does not exist")
    missing = [name for name in FILES if not (path / name).is_file()]
    if missing:
        raise GanModelMissing(path, f"missing {', '.join(missing)}")
    try:
        info = json.loads((path / CONFIG).read_text())
        config = GanConfig.from_dict(info.pop("model"))
        categories = [str(c) for c in info.pop("categories")]
        state = load_file(str(path / WEIGHTS))
    except (ValueError, KeyError, TypeError, AttributeError, OSError, SafetensorError) as exc:
        raise GanModelMissing(path, f"unreadable files: {exc}") from exc
    if config.categories != len(categories) + 1:
        raise GanModelMissing(path, "config.json's category count does not match its list")
    generator = Generator(config)
    try:
        generator.load_state_dict(state)
    except RuntimeError as exc:
        raise GanModelMissing(path, f"weights do not fit config.json: {exc}") from exc
    if not all(torch.isfinite(t).all() for t in state.values()):
        raise GanModelMissing(path, "the weights hold NaN or infinite values")
    generator.to(device).eval()
    return LoadedGan(generator=generator, categories=categories, info=info, path=path)
