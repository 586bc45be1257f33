"""Training the layout VAE: dataset, seeded training, a new active ``ModelArtifact``.

``train_layout_model()`` is what ``aigc_train layout`` and the
``aigc_django.train_layout_model`` task call. Every call makes the next version
(``MODEL_DIR/layout/v<N>/``: ``config.json`` and ``model.safetensors``) and a
``ModelArtifact(kind="layout")`` that becomes the active one. With fewer training layouts
than ``AIGC["LAYOUT"]["MIN_LAYOUTS"]`` it raises :class:`TooFewLayouts` and changes
nothing: the previous model (or the fixed layouts) stays in service.
"""

from __future__ import annotations

import math
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict

import torch
from django.db import IntegrityError, transaction

from aigc_django.generation.layouts import model as layoutmodel
from aigc_django.generation.layouts.data import LayoutDataset, build_dataset
from aigc_django.generation.layouts.encoding import condition_vector, target_vector
from aigc_django.models import ModelArtifact

Progress = Callable[[int, int], None]
KIND = "layout"
KEEP_VERSIONS = 3
HELD_OUT = 0.1
# Weight of the squared box error against the KL term (a box noise of about 0.07).
RECON_SCALE = 100.0


class TooFewLayouts(ValueError):
    """Not enough layouts to train on; nothing was changed."""


def next_version() -> int:
    latest = (
        ModelArtifact.objects.filter(kind=KIND)
        .order_by("-version")
        .values_list("version", flat=True)
        .first()
    )
    return (latest or 0) + 1


def tensors(dataset: LayoutDataset, device: torch.device) -> dict[str, torch.Tensor]:
    """The dataset as tensors: target, mask, condition, segment, weight."""
    targets, masks, conditions, segments, weights = [], [], [], [], []
    for example in dataset.examples:
        values, mask = target_vector(example.boxes)
        targets.append(values)
        masks.append(mask)
        conditions.append(condition_vector(example.condition))
        segments.append(example.condition.segment)
        weights.append(example.weight)
    return {
        "target": torch.tensor(targets, dtype=torch.float32, device=device),
        "mask": torch.tensor(masks, dtype=torch.float32, device=device),
        "condition": torch.tensor(conditions, dtype=torch.float32, device=device),
        "segment": torch.tensor(segments, dtype=torch.long, device=device),
        "weight": torch.tensor(weights, dtype=torch.float32, device=device),
    }


def losses(
    model: layoutmodel.LayoutVAE, batch: dict[str, torch.Tensor], beta: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(weighted loss, mean reconstruction error, mean KL) of a batch."""
    recon, mean, logvar = model(
        batch["target"], batch["mask"], batch["condition"], batch["segment"]
    )
    error = (((recon - batch["target"]) ** 2) * batch["mask"]).sum(dim=-1)
    kl = -0.5 * (1 + logvar - mean**2 - logvar.exp()).sum(dim=-1)
    weight = batch["weight"] / batch["weight"].sum()
    loss = (weight * (RECON_SCALE * error + beta * kl)).sum()
    return loss, error.mean(), kl.mean()


def train_layout_model(
    epochs: int | None = None,
    device: str | None = None,
    seed: int = 0,
    progress: Progress | None = None,
    *,
    batch_size: int = 256,
    learning_rate: float = 2e-3,
    hidden: int = 128,
    latent: int = 8,
    threads: int | None = 1,
) -> ModelArtifact:
    """Train the layout VAE on the composer's and the variants' layouts; the new active
    ``ModelArtifact(kind="layout")``.

    ``epochs`` defaults to ``AIGC["LAYOUT"]["EPOCHS"]``; ``device`` to
    ``AIGC["PROFILES"]["DEVICE"]`` ("auto" picks CUDA when there is one).
    ``progress(step, total)`` is called after every optimizer step. Raises
    :class:`TooFewLayouts` (nothing changed) with fewer than ``MIN_LAYOUTS`` layouts.
    ``threads``: torch CPU threads while training on the CPU (restored afterwards; None:
    leave torch's setting). One by default: the model is tiny, and on a 2-core machine two
    threads were no faster when it was idle (0.97x the time) and 3.9x slower with one core
    busy (benchmarks/train_threads.py, docs/performance.md).
    """
    from aigc_django.conf import aigc_settings
    from aigc_django.generation.backends.base import cpu_threads, torch_device
    from aigc_django.generation.compose import BrandStyle
    from aigc_django.generation.layouts import runtime
    from aigc_django.profiles.build import model_dir

    options = aigc_settings.LAYOUT
    epochs = int(epochs if epochs is not None else options["EPOCHS"])
    if epochs < 1:
        raise ValueError("epochs must be at least 1")
    started = time.perf_counter()
    target = torch.device(torch_device(device or aigc_settings.PROFILES["DEVICE"]))
    style = BrandStyle.from_settings()
    dataset = build_dataset(int(options["SYNTHETIC"]), seed, (style.font, style.bold_font))
    minimum = int(options["MIN_LAYOUTS"])
    if len(dataset.examples) < minimum:
        raise TooFewLayouts(
            f"Only {len(dataset.examples)} layouts to train on ({dataset.composer} from the "
            f"composer, {dataset.variants} from {dataset.variant_banners} approved or clicked "
            f"variants); at least {minimum} are needed (AIGC['LAYOUT']['MIN_LAYOUTS']). "
            "Nothing was changed: banners keep the current layouts."
        )
    data_seconds = time.perf_counter() - started
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(dataset.examples), generator=generator).tolist()
    held = int(len(order) * HELD_OUT) if len(order) >= 50 else 0
    everything = tensors(dataset, target)
    heldout = {k: v[order[:held]] for k, v in everything.items()}
    train = {k: v[order[held:]] for k, v in everything.items()}
    rows = len(order) - held

    with cpu_threads(threads, target) as used_threads:
        model, running, step, train_seconds = _fit(
            train, rows, epochs, batch_size, learning_rate, hidden, latent, seed, target, progress
        )
    heldout_recon = heldout_kl = None
    if held:
        model.eval()
        with torch.no_grad():
            _, recon, kl = losses(model, heldout, 1.0)
        heldout_recon, heldout_kl = round(float(recon), 5), round(float(kl), 4)
    seconds = time.perf_counter() - started
    metrics = {
        "layouts": len(dataset.examples),
        "composer_layouts": dataset.composer,
        "variant_layouts": dataset.variants,
        "variant_banners": dataset.variant_banners,
        "train_layouts": rows,
        "heldout_layouts": held,
        "parameters": model.parameter_count(),
        "epochs": epochs,
        "steps": step,
        "train_loss": round(running["loss"], 4),
        "train_recon": round(running["recon"], 5),
        "train_kl": round(running["kl"], 4),
        "heldout_recon": heldout_recon,
        "heldout_kl": heldout_kl,
        "samples_per_s": round(rows * epochs / train_seconds, 1) if train_seconds else None,
        "train_seconds": round(train_seconds, 2),
        "threads": used_threads,
        "data_seconds": round(data_seconds, 2),
        "seconds": round(seconds, 2),
        "device": str(target),
        "seed": seed,
    }
    artifact = _save(model, metrics, model_dir() / KIND)
    runtime.reset()
    return artifact


def _fit(
    train: dict[str, torch.Tensor],
    rows: int,
    epochs: int,
    batch_size: int,
    learning_rate: float,
    hidden: int,
    latent: int,
    seed: int,
    target: torch.device,
    progress: Progress | None,
) -> tuple[layoutmodel.LayoutVAE, dict[str, float], int, float]:
    """The training loop: (model, last epoch's mean losses, steps, seconds)."""
    generator = torch.Generator().manual_seed(seed + 1)
    torch.manual_seed(seed)
    config = layoutmodel.LayoutVAEConfig(hidden=hidden, latent=latent)
    model = layoutmodel.LayoutVAE(config).to(target)
    optimizer = torch.optim.Adam(model.parameters(), lr=learning_rate)
    per_epoch = math.ceil(rows / batch_size)
    total = per_epoch * epochs
    anneal = max(1, round(total * 0.3))
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: 0.5 * (1 + math.cos(math.pi * min(step, total) / total))
    )
    step = 0
    running = {"loss": 0.0, "recon": 0.0, "kl": 0.0}
    train_started = time.perf_counter()
    for _ in range(epochs):
        model.train()
        permutation = torch.randperm(rows, generator=generator).to(target)
        running = {"loss": 0.0, "recon": 0.0, "kl": 0.0}
        batches = 0
        for start in range(0, rows, batch_size):
            index = permutation[start : start + batch_size]
            batch = {k: v[index] for k, v in train.items()}
            beta = min(1.0, (step + 1) / anneal)
            loss, recon, kl = losses(model, batch, beta)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            optimizer.step()
            scheduler.step()
            running["loss"] += loss.item()
            running["recon"] += recon.item()
            running["kl"] += kl.item()
            batches += 1
            step += 1
            if progress is not None:
                progress(step, total)
        running = {k: v / max(1, batches) for k, v in running.items()}
    train_seconds = time.perf_counter() - train_started
    return model, running, step, train_seconds


def _save(model: layoutmodel.LayoutVAE, metrics: dict, root) -> ModelArtifact:
    """Write the next version's directory and make its artifact the active one (a version
    another training claimed first is skipped; an existing directory is never overwritten)."""
    version = next_version()
    for _ in range(20):
        directory = root / f"v{version}"
        try:
            directory.mkdir(parents=True, exist_ok=False)
        except FileExistsError:
            version += 1
            continue
        layoutmodel.save(model, directory, {"version": version, "kind": KIND, "metrics": metrics})
        try:
            with transaction.atomic():
                ModelArtifact.objects.filter(kind=KIND, active=True).update(active=False)
                artifact = ModelArtifact.objects.create(
                    kind=KIND,
                    version=version,
                    metrics={**metrics, "config": asdict(model.config)},
                    path=str(directory),
                    active=True,
                )
        except IntegrityError:
            shutil.rmtree(directory, ignore_errors=True)
            version = max(version + 1, next_version())
            continue
        for old in ModelArtifact.objects.filter(kind=KIND, version__lte=version - KEEP_VERSIONS):
            transaction.on_commit(lambda path=old.path: shutil.rmtree(path, ignore_errors=True))
        return artifact
    raise RuntimeError(f"could not claim a free layout model version under {root}")
