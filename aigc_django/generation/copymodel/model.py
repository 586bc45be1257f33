"""The copy model: a small decoder-only transformer, saved as config JSON + safetensors.

A model directory holds ``config.json`` (the architecture, the version and training facts),
``model.safetensors`` (the weights), ``tokenizer.json`` and ``facts.json`` (catalog titles and
category names that copy may only name through placeholders).
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

from aigc_django.generation.copymodel.tokenizer import Tokenizer

CONFIG = "config.json"
WEIGHTS = "model.safetensors"
TOKENIZER = "tokenizer.json"
FACTS = "facts.json"
FILES = (CONFIG, WEIGHTS, TOKENIZER, FACTS)


class CopyModelMissing(ImproperlyConfigured):
    """No trained copy model where one was expected."""

    def __init__(self, directory: str | Path, detail: str = "") -> None:
        self.directory = str(directory)
        message = f"No trained copy model in {self.directory}"
        if detail:
            message += f" ({detail})"
        super().__init__(message + ": run `manage.py aigc_train` to train one.")


@dataclass(frozen=True)
class CopyModelConfig:
    """The transformer's shape. ``max_len`` counts the control prefix and ``<eos>``."""

    vocab_size: int
    d_model: int = 128
    n_layers: int = 2
    n_heads: int = 4
    d_ff: int = 384
    max_len: int = 64
    dropout: float = 0.1

    def __post_init__(self) -> None:
        if self.d_model % self.n_heads:
            raise ValueError("d_model must be a multiple of n_heads")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CopyModelConfig:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


class Block(nn.Module):
    """Pre-norm causal self-attention and a feed-forward layer."""

    def __init__(self, config: CopyModelConfig) -> None:
        super().__init__()
        self.heads = config.n_heads
        self.norm1 = nn.LayerNorm(config.d_model)
        self.qkv = nn.Linear(config.d_model, 3 * config.d_model)
        self.proj = nn.Linear(config.d_model, config.d_model)
        self.norm2 = nn.LayerNorm(config.d_model)
        self.ff = nn.Sequential(
            nn.Linear(config.d_model, config.d_ff),
            nn.GELU(),
            nn.Linear(config.d_ff, config.d_model),
        )
        self.dropout = nn.Dropout(config.dropout)
        self.attn_dropout = config.dropout

    def forward(
        self, x: torch.Tensor, past: tuple[torch.Tensor, torch.Tensor] | None = None
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """The block's output and its keys and values so far (``past`` plus these tokens).

        With ``past``, ``x`` holds the tokens after those already seen (one per step when
        sampling), and they attend to every earlier token.
        """
        batch, length, width = x.shape
        if past is not None and length > 1:
            raise ValueError("feed one token at a time after the first call")
        q, k, v = self.qkv(self.norm1(x)).split(width, dim=2)
        q, k, v = (t.view(batch, length, self.heads, -1).transpose(1, 2) for t in (q, k, v))
        if past is not None:
            k, v = torch.cat([past[0], k], dim=2), torch.cat([past[1], v], dim=2)
        attended = F.scaled_dot_product_attention(
            q,
            k,
            v,
            is_causal=past is None,
            dropout_p=self.attn_dropout if self.training else 0.0,
        )
        x = x + self.dropout(self.proj(attended.transpose(1, 2).reshape(batch, length, width)))
        return x + self.dropout(self.ff(self.norm2(x))), (k, v)


class CopyModel(nn.Module):
    """Next-token logits for sequences of token ids (``[batch, length]``)."""

    def __init__(self, config: CopyModelConfig) -> None:
        super().__init__()
        self.config = config
        self.embed = nn.Embedding(config.vocab_size, config.d_model)
        self.position = nn.Embedding(config.max_len, config.d_model)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layers))
        self.norm = nn.LayerNorm(config.d_model)
        self.head = nn.Linear(config.d_model, config.vocab_size, bias=False)
        self.head.weight = self.embed.weight  # tied
        self.apply(self._init)
        for block in self.blocks:
            nn.init.normal_(block.proj.weight, std=0.02 / math.sqrt(2 * config.n_layers))

    @staticmethod
    def _init(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, std=0.02)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        """Next-token logits ``[batch, length, vocab]`` for every position."""
        return self.step(ids)[0]

    def step(
        self, ids: torch.Tensor, past: list[tuple[torch.Tensor, torch.Tensor]] | None = None
    ) -> tuple[torch.Tensor, list[tuple[torch.Tensor, torch.Tensor]]]:
        """Logits for ``ids`` and the key/value cache to pass with the next token.

        ``past`` is what the previous call returned (None for a first call with the whole
        prefix); then ``ids`` is one new token per row.
        """
        start = 0 if past is None else past[0][0].shape[2]
        length = start + ids.shape[1]
        if length > self.config.max_len:
            raise ValueError(f"sequence of {length} tokens is longer than {self.config.max_len}")
        positions = torch.arange(start, length, device=ids.device)
        x = self.embed(ids) + self.position(positions)
        cache = []
        for index, block in enumerate(self.blocks):
            x, kv = block(x, None if past is None else past[index])
            cache.append(kv)
        return self.head(self.norm(x)), cache

    def parameter_count(self) -> int:
        return sum(p.numel() for p in self.parameters())


@dataclass
class LoadedModel:
    """A model ready to sample from, with everything saved beside it."""

    model: CopyModel
    tokenizer: Tokenizer
    titles: list[str]
    category_names: dict[str, str]
    info: dict[str, Any]
    path: Path

    @property
    def version(self) -> str:
        return str(self.info.get("version", ""))

    @property
    def device(self) -> torch.device:
        return self.model.embed.weight.device


def save(
    model: CopyModel,
    tokenizer: Tokenizer,
    directory: Path,
    *,
    titles: list[str],
    category_names: dict[str, str],
    info: dict[str, Any],
) -> None:
    """Write the four files of a model directory (created when missing)."""
    from safetensors.torch import save_file

    directory.mkdir(parents=True, exist_ok=True)
    state = {
        name: tensor.detach().cpu().contiguous()
        for name, tensor in model.state_dict().items()
        if name != "head.weight"  # tied to embed.weight
    }
    save_file(state, str(directory / WEIGHTS))
    tokenizer.save(directory / TOKENIZER)
    (directory / FACTS).write_text(
        json.dumps({"titles": titles, "categories": category_names}, ensure_ascii=False)
    )
    (directory / CONFIG).write_text(
        json.dumps({"model": asdict(model.config), **info}, indent=2, ensure_ascii=False)
    )


def load(directory: str | Path, device: str | torch.device = "cpu") -> LoadedModel:
    """A saved model in eval mode on ``device``; ``CopyModelMissing`` when it is not there."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(directory)
    if not path.is_dir():
        raise CopyModelMissing(path, "the directory does not exist")
    missing = [name for name in FILES if not (path / name).is_file()]
    if missing:
        raise CopyModelMissing(path, f"missing {', '.join(missing)}")
    try:
        info = json.loads((path / CONFIG).read_text())
        config = CopyModelConfig.from_dict(info.pop("model"))
        tokenizer = Tokenizer.load(path / TOKENIZER)
        facts = json.loads((path / FACTS).read_text())
        state = load_file(str(path / WEIGHTS))
    except (ValueError, KeyError, TypeError, OSError, SafetensorError) as exc:
        raise CopyModelMissing(path, f"unreadable files: {exc}") from exc
    if config.vocab_size != len(tokenizer):
        raise CopyModelMissing(path, "config.json and tokenizer.json do not match")
    model = CopyModel(config)
    state["head.weight"] = state["embed.weight"]
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise CopyModelMissing(path, f"weights do not fit config.json: {exc}") from exc
    model.to(device).eval()
    return LoadedModel(
        model=model,
        tokenizer=tokenizer,
        titles=list(facts.get("titles", [])),
        category_names=dict(facts.get("categories", {})),
        info=info,
        path=path,
    )
