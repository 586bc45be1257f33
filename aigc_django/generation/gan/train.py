"""Training the image GAN: the shop's images, seeded training, a new versioned artifact.

``train_gan_model()`` is what ``manage.py aigc_train gan`` and the
``aigc_django.train_gan_model`` task call. Every call makes the next version
(``MODEL_DIR/gan/v<N>/``) and a ``ModelArtifact(kind="gan")`` that becomes the active one.
With too few images it raises ``TooFewImages`` before anything is written, so the previous
model stays in service.

Stabilisers: hinge loss, spectral norm on every discriminator layer, a projection
discriminator for the condition, two time-scale learning rates (Adam, beta1 = 0), an
exponential moving average of the generator's weights (the saved and sampled generator), and
augmentation: random crops and flips of the real images, plus a differentiable random
translation applied to real and generated images alike before the discriminator sees them
(DiffAugment, Zhao et al. 2020), which keeps a small image set from being memorised by the
discriminator. Colours are never augmented: they are the palette condition.
"""

from __future__ import annotations

import copy
import math
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import torch
from django.db import IntegrityError, transaction
from torch.nn import functional as F

from aigc_django.generation.gan import model as ganmodel
from aigc_django.generation.gan.data import (
    MIN_IMAGES,
    ImageSet,
    build_image_set,
    collect_images,
)
from aigc_django.models import ModelArtifact

Progress = Callable[[int, int], None]
KIND = "gan"
# Optimizer steps when no epochs are given: about a minute on two CPU cores at the defaults.
DEFAULT_STEPS = 400
KEEP_VERSIONS = 3
EMA_DECAY = 0.995
# Share of real images whose category is replaced by the unknown bucket, so that bucket
# learns "any category" for briefs whose category the model never saw.
UNKNOWN_SHARE = 0.1


def next_version() -> int:
    latest = (
        ModelArtifact.objects.filter(kind=KIND)
        .order_by("-version")
        .values_list("version", flat=True)
        .first()
    )
    return (latest or 0) + 1


def real_batch(
    data: ImageSet, size: int, resolution: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A random batch of real images (random crop and flip) with their conditions."""
    index = torch.randint(0, len(data), (size,), generator=generator)
    side = data.images.shape[-1]
    spare = side - resolution
    crops = []
    for i in index.tolist():
        x, y = (int(v) for v in torch.randint(0, spare + 1, (2,), generator=generator))
        crop = data.images[i, :, y : y + resolution, x : x + resolution]
        if bool(torch.rand(1, generator=generator) < 0.5):
            crop = crop.flip(-1)
        crops.append(crop)
    categories = data.categories[index].clone()
    drop = torch.rand(size, generator=generator) < UNKNOWN_SHARE
    categories[drop] = ganmodel.UNKNOWN
    return torch.stack(crops), categories, data.palettes[index]


def translate(images: torch.Tensor, shift: float = 0.125) -> torch.Tensor:
    """Each image moved by up to ``shift`` of its side (reflected at the border);
    differentiable, so the discriminator sees real and generated images augmented alike."""
    batch = images.shape[0]
    theta = torch.zeros(batch, 2, 3, device=images.device, dtype=images.dtype)
    theta[:, 0, 0] = 1
    theta[:, 1, 1] = 1
    theta[:, :, 2] = (torch.rand(batch, 2, device=images.device) * 2 - 1) * 2 * shift
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, padding_mode="reflection", align_corners=False)


@torch.no_grad()
def update_ema(ema: ganmodel.Generator, live: ganmodel.Generator, decay: float) -> None:
    for target, source in zip(ema.parameters(), live.parameters(), strict=True):
        target.lerp_(source, 1 - decay)


def train_gan_model(
    epochs: int | None = None,
    device: str | None = None,
    seed: int = 0,
    progress: Progress | None = None,
    *,
    steps: int | None = None,
    batch_size: int = 16,
    resolution: int = 64,
    channels: int = 8,
    z_dim: int = 64,
    g_learning_rate: float = 2e-4,
    d_learning_rate: float = 4e-4,
    min_images: int = MIN_IMAGES,
    threads: int | None = 1,
) -> ModelArtifact:
    """Train a GAN on the shop's images and make it the active ``ModelArtifact(kind="gan")``.

    ``epochs``: passes over the training images (each pass is ``images / batch_size``
    steps); ``steps`` sets the optimizer steps directly; with neither, ``DEFAULT_STEPS``.
    ``progress(step, total)`` is called after every step. ``device``: "cpu", "cuda", ...
    (None: ``AIGC["PROFILES"]["DEVICE"]``; "auto" picks CUDA when there is one). Raises
    ``TooFewImages`` (nothing written) with fewer than ``min_images`` usable images.
    ``threads``: torch CPU threads while training on the CPU (restored afterwards; None:
    leave torch's setting). One by default: on a 2-core machine two threads trained 1.4-1.5x
    faster when it was idle but 2.2-2.4x slower with one core busy
    (benchmarks/train_threads.py, docs/performance.md), and a training worker usually
    shares its machine.
    """
    from aigc_django.conf import aigc_settings
    from aigc_django.generation.backends.base import cpu_threads, torch_device
    from aigc_django.profiles.build import model_dir

    if epochs is not None and epochs < 1:
        raise ValueError("epochs must be at least 1")
    if steps is not None and steps < 1:
        raise ValueError("steps must be at least 1")
    started = time.perf_counter()
    target = torch.device(torch_device(device or aigc_settings.PROFILES["DEVICE"]))
    data = build_image_set(collect_images(), resolution, min_images)
    if steps is None:
        steps = max(1, math.ceil(epochs * len(data) / batch_size)) if epochs else DEFAULT_STEPS
    prepared = time.perf_counter() - started
    with cpu_threads(threads, target) as used_threads:
        ema, d_losses, g_losses, train_seconds = _train(
            data,
            steps,
            target,
            seed,
            progress,
            batch_size,
            resolution,
            channels,
            z_dim,
            g_learning_rate,
            d_learning_rate,
        )
    tail = max(1, steps // 10)
    metrics = {
        "images": len(data),
        "sources": data.sources,
        "categories": data.vocabulary,
        "resolution": resolution,
        "parameters": ema.parameter_count(),
        "batch_size": batch_size,
        "steps": steps,
        "epochs": round(steps * batch_size / len(data), 2),
        # Means over the last tenth of training (single steps are noisy).
        "d_loss": round(sum(d_losses[-tail:]) / tail, 4),
        "g_loss": round(sum(g_losses[-tail:]) / tail, 4),
        "d_loss_curve": _curve(d_losses),
        "g_loss_curve": _curve(g_losses),
        "seconds": round(time.perf_counter() - started, 2),
        "prepare_seconds": round(prepared, 2),
        "train_seconds": round(train_seconds, 2),
        "images_per_second": round(steps * batch_size / max(train_seconds, 1e-9), 1),
        "device": str(target),
        "threads": used_threads,
        "seed": seed,
    }
    return _save(ema.cpu(), data.vocabulary, metrics, model_dir() / KIND)


def _train(
    data: ImageSet,
    steps: int,
    target: torch.device,
    seed: int,
    progress: Progress | None,
    batch_size: int,
    resolution: int,
    channels: int,
    z_dim: int,
    g_learning_rate: float,
    d_learning_rate: float,
) -> tuple[ganmodel.Generator, list[float], list[float], float]:
    """The training loop: the EMA generator, the losses per step and the loop's seconds."""
    config = ganmodel.GanConfig(
        categories=len(data.vocabulary) + 1,
        resolution=resolution,
        z_dim=z_dim,
        channels=channels,
    )
    torch.manual_seed(seed)
    rng = torch.Generator().manual_seed(seed)
    generator = ganmodel.Generator(config).to(target)
    discriminator = ganmodel.Discriminator(config).to(target)
    ema = copy.deepcopy(generator).eval().requires_grad_(False)
    g_opt = torch.optim.Adam(generator.parameters(), lr=g_learning_rate, betas=(0.0, 0.99))
    d_opt = torch.optim.Adam(discriminator.parameters(), lr=d_learning_rate, betas=(0.0, 0.99))
    d_losses, g_losses = [], []
    train_started = time.perf_counter()
    for step in range(1, steps + 1):
        reals, categories, palettes = real_batch(data, batch_size, resolution, rng)
        reals, categories, palettes = reals.to(target), categories.to(target), palettes.to(target)
        z = torch.randn(batch_size, z_dim, generator=rng).to(target)
        # Discriminator: hinge loss on real and (detached) generated images.
        with torch.no_grad():
            fakes = generator(z, categories, palettes)
        d_loss = (
            F.relu(1 - discriminator(translate(reals), categories, palettes)).mean()
            + F.relu(1 + discriminator(translate(fakes), categories, palettes)).mean()
        )
        d_opt.zero_grad(set_to_none=True)
        d_loss.backward()
        d_opt.step()
        # Generator: raise the discriminator's score of new samples.
        z = torch.randn(batch_size, z_dim, generator=rng).to(target)
        g_loss = -discriminator(translate(generator(z, categories, palettes)), categories, palettes)
        g_loss = g_loss.mean()
        g_opt.zero_grad(set_to_none=True)
        g_loss.backward()
        g_opt.step()
        # A short warm-up so the average is not dominated by the random first weights.
        update_ema(ema, generator, min(EMA_DECAY, (1 + step) / (10 + step)))
        d_losses.append(float(d_loss.detach()))
        g_losses.append(float(g_loss.detach()))
        if not (math.isfinite(d_losses[-1]) and math.isfinite(g_losses[-1])):
            raise FloatingPointError(
                f"GAN training diverged at step {step} (loss {d_losses[-1]}, {g_losses[-1]}); "
                "nothing was saved and the current image model stays in service."
            )
        if progress is not None:
            progress(step, steps)
    return ema, d_losses, g_losses, time.perf_counter() - train_started


def _curve(losses: list[float], points: int = 10) -> list[float]:
    """Mean loss over each tenth of training: the shape of the run in ten numbers."""
    size = max(1, math.ceil(len(losses) / points))
    chunks = [losses[i : i + size] for i in range(0, len(losses), size)]
    return [round(sum(c) / len(c), 4) for c in chunks]


def _save(
    generator: ganmodel.Generator, vocabulary: list[str], metrics: dict, root: Path
) -> ModelArtifact:
    """Write the next version's directory and make its artifact the active one.

    The directory is created before it is written (an existing one is never overwritten),
    and the version number is claimed again when another training took it first.
    """
    version = next_version()
    for _ in range(20):
        directory = root / f"v{version}"
        try:
            directory.mkdir(parents=True, exist_ok=False)
        except FileExistsError:
            version += 1
            continue
        ganmodel.save(
            generator, vocabulary, directory, {"version": version, "kind": KIND, "metrics": metrics}
        )
        try:
            with transaction.atomic():
                ModelArtifact.objects.filter(kind=KIND, active=True).update(active=False)
                artifact = ModelArtifact.objects.create(
                    kind=KIND,
                    version=version,
                    metrics={**metrics, "config": asdict(generator.config)},
                    path=str(directory),
                    active=True,
                )
        except IntegrityError:  # the database has this version (another machine's files)
            shutil.rmtree(directory, ignore_errors=True)
            version = max(version + 1, next_version())
            continue
        for old in ModelArtifact.objects.filter(kind=KIND, version__lte=version - KEEP_VERSIONS):
            transaction.on_commit(lambda path=old.path: shutil.rmtree(path, ignore_errors=True))
        return artifact
    raise RuntimeError(f"could not claim a free GAN version under {root}")
