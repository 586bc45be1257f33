"""The layout VAE: a conditional variational autoencoder over banner layouts (torch).

Encoder: (layout, mask, condition, segment embedding) -> mean and log-variance of a small
latent. Decoder: (latent, condition, segment embedding) -> every element's box
(cx, cy, w, h in 0..1). Saved like the other builtin models: ``config.json`` (the config
and the training report) beside ``model.safetensors``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from aigc_django.generation.layouts.encoding import (
    CONDITION_DIM,
    SEGMENT_BUCKETS,
    TARGET_DIM,
)

CONFIG = "config.json"
WEIGHTS = "model.safetensors"


class LayoutModelMissing(Exception):
    """The layout model's directory or files are missing or unreadable."""


@dataclass(frozen=True)
class LayoutVAEConfig:
    hidden: int = 128
    latent: int = 8
    segment_dim: int = 8
    condition_dim: int = CONDITION_DIM
    target_dim: int = TARGET_DIM
    segment_buckets: int = SEGMENT_BUCKETS


def _mlp(inputs: int, hidden: int, outputs: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(inputs, hidden),
        nn.SiLU(),
        nn.Linear(hidden, hidden),
        nn.SiLU(),
        nn.Linear(hidden, outputs),
    )


class LayoutVAE(nn.Module):
    def __init__(self, config: LayoutVAEConfig) -> None:
        super().__init__()
        self.config = config
        self.segment = nn.Embedding(config.segment_buckets, config.segment_dim)
        context = config.condition_dim + config.segment_dim
        self.encoder = _mlp(2 * config.target_dim + context, config.hidden, 2 * config.latent)
        self.decoder = _mlp(config.latent + context, config.hidden, config.target_dim)

    def context(self, condition: torch.Tensor, segment: torch.Tensor) -> torch.Tensor:
        return torch.cat([condition, self.segment(segment)], dim=-1)

    def encode(
        self, target: torch.Tensor, mask: torch.Tensor, context: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        stats = self.encoder(torch.cat([target * mask, mask, context], dim=-1))
        mean, logvar = stats.chunk(2, dim=-1)
        return mean, logvar.clamp(-10.0, 6.0)

    def decode(self, latent: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.decoder(torch.cat([latent, context], dim=-1)))

    def forward(
        self,
        target: torch.Tensor,
        mask: torch.Tensor,
        condition: torch.Tensor,
        segment: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(reconstruction, mean, log-variance) of a batch."""
        context = self.context(condition, segment)
        mean, logvar = self.encode(target, mask, context)
        latent = mean + torch.randn_like(mean) * torch.exp(0.5 * logvar)
        return self.decode(latent, context), mean, logvar

    @torch.no_grad()
    def sample(
        self,
        condition: torch.Tensor,
        segment: torch.Tensor,
        generator: torch.Generator | None = None,
        temperature: float = 1.0,
    ) -> torch.Tensor:
        """Boxes for each row of a batch of conditions, from latents drawn with ``generator``."""
        context = self.context(condition, segment)
        latent = torch.randn(
            (condition.shape[0], self.config.latent),
            generator=generator,
            device="cpu",
        ).to(condition.device)
        return self.decode(latent * temperature, context)

    def parameter_count(self) -> int:
        return sum(p.numel() for p in self.parameters())


def save(model: LayoutVAE, directory: Path, info: dict[str, Any]) -> None:
    """Write ``config.json`` and ``model.safetensors`` into ``directory`` (created)."""
    from safetensors.torch import save_file

    directory.mkdir(parents=True, exist_ok=True)
    state = {name: t.detach().cpu().contiguous() for name, t in model.state_dict().items()}
    save_file(state, str(directory / WEIGHTS))
    (directory / CONFIG).write_text(
        json.dumps({"model": asdict(model.config), **info}, indent=2, ensure_ascii=False)
    )


def load(directory: str | Path, device: str | torch.device = "cpu") -> tuple[LayoutVAE, dict]:
    """(model in eval mode, saved info); ``LayoutModelMissing`` for anything unreadable."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    directory = Path(directory)
    try:
        info = json.loads((directory / CONFIG).read_text())
        config = LayoutVAEConfig(**info["model"])
        model = LayoutVAE(config)
        state = load_file(str(directory / WEIGHTS))
        model.load_state_dict(state, strict=True)
    except (OSError, ValueError, KeyError, TypeError, RuntimeError, SafetensorError) as exc:
        raise LayoutModelMissing(f"cannot load the layout model in {directory}: {exc}") from exc
    model.to(device).eval()
    return model, info
