"""Training the copy model: corpus, seeded training, held-out evaluation, a new artifact.

``train_copy_model()`` is what the ``aigc_train`` command and the
``aigc_django.train_copy_model`` task call. Every call makes the next version
(``MODEL_DIR/copy/v<N>/``) and a ``ModelArtifact(kind="copy")`` that becomes the active one.
"""

from __future__ import annotations

import math
import random
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict

import torch
from django.db import IntegrityError, transaction
from torch.nn import functional as F

from aigc_django.generation.copymodel import model as copymodel
from aigc_django.generation.copymodel.corpus import COPY_FIELDS, Corpus, build_corpus
from aigc_django.generation.copymodel.tokenizer import (
    ANY,
    EVERYONE,
    PREFIX_LENGTH,
    Tokenizer,
    control,
)
from aigc_django.models import ModelArtifact

Progress = Callable[[int, int], None]
KIND = "copy"
DEFAULT_EPOCHS = 12
KEEP_VERSIONS = 3
HELD_OUT = 0.1


def next_version() -> int:
    latest = (
        ModelArtifact.objects.filter(kind=KIND)
        .order_by("-version")
        .values_list("version", flat=True)
        .first()
    )
    return (latest or 0) + 1


def build_tokenizer(corpus: Corpus) -> Tokenizer:
    """Words of the corpus plus a control token for every condition it (or a brief) uses."""
    controls = [control("seg", key) for key in {*corpus.segments, EVERYONE}]
    controls += [control("cat", key) for key in {*corpus.categories, ANY}]
    controls += [control("slot", key) for key in {*corpus.slots, ANY}]
    names = {e.field for e in corpus.examples} | set(COPY_FIELDS) | {ANY}
    controls += [control("field", name) for name in names]
    return Tokenizer.train((e.text for e in corpus.examples), controls)


def encode(corpus: Corpus, tokenizer: Tokenizer, max_len: int) -> list[tuple[list[int], int]]:
    """(token ids, weight) per example: control prefix, text, ``<eos>``; cut to ``max_len``."""
    rows = []
    for example in corpus.examples:
        ids = tokenizer.prefix(example.segment, example.category, example.slot, example.field)
        ids += [*tokenizer.encode(example.text), tokenizer.eos_id]
        rows.append((ids[:max_len], example.weight))
    return rows


def _batch(rows: list[list[int]], pad: int, device: torch.device) -> torch.Tensor:
    width = max(len(r) for r in rows)
    return torch.tensor([r + [pad] * (width - len(r)) for r in rows], device=device)


def _loss(model: copymodel.CopyModel, batch: torch.Tensor, pad: int) -> torch.Tensor:
    """Mean next-token loss over the text tokens (the control prefix is given, not learned)."""
    logits = model(batch[:, :-1])
    targets = batch[:, 1:].clone()
    targets[:, : PREFIX_LENGTH - 1] = -100
    targets[targets == pad] = -100
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))


@torch.no_grad()
def evaluate(
    model: copymodel.CopyModel, rows: list[list[int]], pad: int, batch_size: int = 128
) -> float:
    """Mean loss per text token over ``rows`` (nan for none)."""
    model.eval()
    total, tokens = 0.0, 0
    device = model.embed.weight.device
    for start in range(0, len(rows), batch_size):
        batch = _batch(rows[start : start + batch_size], pad, device)
        logits = model(batch[:, :-1])
        targets = batch[:, 1:].clone()
        targets[:, : PREFIX_LENGTH - 1] = -100
        targets[targets == pad] = -100
        total += float(
            F.cross_entropy(
                logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), reduction="sum"
            )
        )
        tokens += int((targets != -100).sum())
    return total / tokens if tokens else float("nan")


def train_copy_model(
    epochs: int = DEFAULT_EPOCHS,
    progress: Progress | None = None,
    device: str | None = None,
    *,
    seed: int = 0,
    batch_size: int = 64,
    learning_rate: float = 3e-3,
    d_model: int = 128,
    n_layers: int = 2,
    n_heads: int = 4,
    max_len: int = 64,
) -> ModelArtifact:
    """Train a copy model on the shop's text and make it the active ``ModelArtifact``.

    ``progress(step, total)`` is called after every optimizer step. ``device``: "cpu",
    "cuda", ... (None: ``AIGC["PROFILES"]["DEVICE"]``, "auto" picks CUDA when there is one).
    The same shop and seed give the same model on the same device.
    """
    from aigc_django.conf import aigc_settings
    from aigc_django.generation.backends.base import torch_device
    from aigc_django.profiles.build import model_dir

    if epochs < 1:
        raise ValueError("epochs must be at least 1")
    started = time.perf_counter()
    target = torch.device(torch_device(device or aigc_settings.PROFILES["DEVICE"]))
    corpus = build_corpus(seed=seed)
    tokenizer = build_tokenizer(corpus)
    config = copymodel.CopyModelConfig(
        vocab_size=len(tokenizer),
        d_model=d_model,
        n_layers=n_layers,
        n_heads=n_heads,
        d_ff=3 * d_model,
        max_len=max_len,
    )
    encoded = encode(corpus, tokenizer, max_len)
    rng = random.Random(seed)
    order = list(range(len(encoded)))
    rng.shuffle(order)
    held = int(len(order) * HELD_OUT) if len(order) >= 20 else 0
    heldout = [encoded[i][0] for i in order[:held]]
    train_rows = [ids for i in order[held:] for ids in [encoded[i][0]] * encoded[i][1]]

    torch.manual_seed(seed)
    model = copymodel.CopyModel(config).to(target)
    optimizer = torch.optim.AdamW(model.parameters(), lr=learning_rate, weight_decay=0.01)
    per_epoch = math.ceil(len(train_rows) / batch_size)
    total = per_epoch * epochs
    warmup = max(1, total // 20)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda step: (
            min(1.0, (step + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(step, total) / total))
        ),
    )
    step, train_loss = 0, float("nan")
    for _ in range(epochs):
        model.train()
        rng.shuffle(train_rows)
        running, batches = 0.0, 0
        for start in range(0, len(train_rows), batch_size):
            batch = _batch(train_rows[start : start + batch_size], tokenizer.pad_id, target)
            loss = _loss(model, batch, tokenizer.pad_id)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            running += loss.item()
            batches += 1
            step += 1
            if progress is not None:
                progress(step, total)
        train_loss = running / max(1, batches)
    heldout_loss = evaluate(model, heldout, tokenizer.pad_id) if heldout else float("nan")
    seconds = time.perf_counter() - started
    metrics = {
        "examples": len(encoded),
        "train_rows": len(train_rows),
        "heldout_examples": len(heldout),
        "sources": corpus.sources,
        "vocab": len(tokenizer),
        "parameters": model.parameter_count(),
        "epochs": epochs,
        "steps": step,
        "train_loss": round(train_loss, 4),
        "heldout_loss": None if math.isnan(heldout_loss) else round(heldout_loss, 4),
        "heldout_perplexity": None
        if math.isnan(heldout_loss)
        else round(math.exp(heldout_loss), 2),
        "seconds": round(seconds, 2),
        "device": str(target),
        "seed": seed,
    }
    return _save(model, tokenizer, corpus, metrics, model_dir() / KIND)


def _save(
    model: copymodel.CopyModel,
    tokenizer: Tokenizer,
    corpus: Corpus,
    metrics: dict,
    root,
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
        info = {"version": version, "kind": KIND, "metrics": metrics}
        copymodel.save(
            model,
            tokenizer,
            directory,
            titles=corpus.titles,
            category_names=corpus.category_names,
            info=info,
        )
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
        except IntegrityError:  # the database has this version (another machine's files)
            shutil.rmtree(directory, ignore_errors=True)
            version = max(version + 1, next_version())
            continue
        for old in ModelArtifact.objects.filter(kind=KIND, version__lte=version - KEEP_VERSIONS):
            transaction.on_commit(lambda path=old.path: shutil.rmtree(path, ignore_errors=True))
        return artifact
    raise RuntimeError(f"could not claim a free copy model version under {root}")
