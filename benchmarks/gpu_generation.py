"""Batched vs one-at-a-time generation, through the real backends.

(a) diffusers: a random-weight Stable Diffusion pipeline built from configs (a UNet of
(128, 256, 512) channels, an 8x VAE, a 512-wide two-layer CLIP text encoder; native
256x256), saved to a temporary folder and loaded by ``DiffusersImageBackend``. Eight briefs
at 256x256, 4 steps: one call with ``BATCH_SIZE`` 8 against eight calls of one brief.
(b) the builtin copy model, through the registry (``copy_backend()``): trained first with
``train_copy_model()`` on a throwaway SQLite site, then 32 briefs in one ``generate`` call
against 32 calls of one brief. If this part fails (the model not there, training broken),
the error is reported and the diffusers figures still are.

Random weights draw noise and write nonsense, but they cost what trained ones of the same
shapes cost: these are throughput figures, not quality.

    .venv/bin/python benchmarks/gpu_generation.py [--device auto] [--smoke] [--out DIR]

``--smoke``: tiny sizes (64x64 pipeline, 2 steps, 4 briefs; a one-epoch copy model), to
check on a CPU that the script runs. Writes ``gpu_generation.json`` under ``--out`` (default
``$OUT`` when set) and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import configure_throwaway_site

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")

FULL = {
    "unet_channels": (128, 256, 512),
    "vae_channels": (64, 128, 256, 256),
    "sample_size": 32,
    "text_width": 512,
    "layers_per_block": 2,
    "size": (256, 256),
    "steps": 4,
    "images": 8,
    "copy_briefs": 32,
    "copy_epochs": 3,
}
SMOKE = {
    "unet_channels": (32, 64),
    "vae_channels": (32, 64),
    "sample_size": 32,
    "text_width": 32,
    "layers_per_block": 1,
    "size": (64, 64),
    "steps": 2,
    "images": 4,
    "copy_briefs": 4,
    "copy_epochs": 1,
}


def setup_django(folder: Path) -> None:
    """A throwaway site: SQLite in ``folder``, models under ``folder``, no catalog.

    Not migrated here: ``copy_part`` migrates when it needs the tables."""
    configure_throwaway_site(
        str(folder / "db"),
        ["rest_framework", "aigc_django"],
        migrate=False,
        CACHES={"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}},
        MEDIA_ROOT=str(folder / "media"),
        AIGC={"MODEL_DIR": str(folder / "models")},
    )


def timed(run: Any, repeats: int) -> float:
    """The best of ``repeats`` wall times of ``run()`` (after one warm-up call)."""
    run()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return best


def diffusers_part(sizes: dict[str, Any], device: str, folder: Path, repeats: int) -> dict:
    import torch

    from aigc_django.generation.backends.diffusers_image import DiffusersImageBackend
    from aigc_django.generation.briefs import Brief
    from tests.test_diffusers_backend import build_pipeline

    build_pipeline(
        folder,
        unet_channels=sizes["unet_channels"],
        vae_channels=sizes["vae_channels"],
        sample_size=sizes["sample_size"],
        text_width=sizes["text_width"],
        layers_per_block=sizes["layers_per_block"],
    )
    count = sizes["images"]
    briefs = [
        Brief(
            slot="hero",
            segment=f"s{i}",
            segment_name=f"S{i}",
            fields={"headline": 40},
            categories=[("tea", "Tea")],
            seed=i,
        )
        for i in range(count)
    ]
    size = sizes["size"]
    results: dict[str, Any] = {"images": count, "size": list(size), "steps": sizes["steps"]}
    for label, batch in (("batched", count), ("one_at_a_time", 1)):
        backend = DiffusersImageBackend(
            label,
            {
                "PATH": str(folder / "pipeline"),
                "DEVICE": device,
                "STEPS": sizes["steps"],
                "BATCH_SIZE": batch,
            },
        )
        backend.ensure_loaded()
        if label == "batched":
            results["dtype"] = str(backend.pipeline.unet.dtype).removeprefix("torch.")
            results["unet_parameters"] = sum(p.numel() for p in backend.pipeline.unet.parameters())
            results["drawn_at"] = list(backend.draw_size(size))
        if batch == count:
            seconds = timed(lambda b=backend: b.generate(briefs, size), repeats)
        else:
            seconds = timed(lambda b=backend: [b.generate([x], size) for x in briefs], repeats)
        results[label] = {"seconds": round(seconds, 4), "images_per_s": round(count / seconds, 2)}
        backend.close()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    results["speedup"] = round(
        results["batched"]["images_per_s"] / results["one_at_a_time"]["images_per_s"], 2
    )
    return results


def copy_part(sizes: dict[str, Any], device: str, repeats: int) -> dict:
    from django.core.management import call_command

    from aigc_django.generation.backends import copy_backend, reset
    from aigc_django.generation.briefs import Brief, Product
    from aigc_django.generation.copymodel.train import train_copy_model

    call_command("migrate", verbosity=0, interactive=False)
    start = time.perf_counter()
    artifact = train_copy_model(epochs=sizes["copy_epochs"], device=device)
    trained = time.perf_counter() - start
    reset()
    backend = copy_backend()
    count = sizes["copy_briefs"]
    briefs = [
        Brief(
            slot="hero",
            segment=f"s{i}",
            segment_name=f"Segment {i}",
            fields={"headline": 60, "body": 160, "cta": 24},
            categories=[("tea", "Tea"), ("cups", "Cups")],
            products=[Product(f"p{i}", f"Green Tea {i}", "tea", "Tea", 4.5 + i)],
            brand_name="Leaf",
            seed=i,
        )
        for i in range(count)
    ]
    results: dict[str, Any] = {
        "backend": type(backend).__name__,
        "model_version": getattr(artifact, "version", ""),
        "train_seconds": round(trained, 2),
        "briefs": count,
    }
    batched = timed(lambda: backend.generate(briefs), repeats)
    single = timed(lambda: [backend.generate([b]) for b in briefs], repeats)
    results["batched"] = {"seconds": round(batched, 4), "briefs_per_s": round(count / batched, 2)}
    results["one_at_a_time"] = {
        "seconds": round(single, 4),
        "briefs_per_s": round(count / single, 2),
    }
    results["speedup"] = round(single / batched, 2)
    results["sample"] = backend.generate(briefs[:1])[0].fields
    reset()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="auto", help='"auto", "cpu", "cuda", "cuda:1"...')
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, to check on a CPU")
    parser.add_argument("--repeats", type=int, default=None, help="timed runs (best kept)")
    parser.add_argument("--out", default=os.environ.get("OUT"), help="folder for the JSON")
    args = parser.parse_args()

    import torch

    from aigc_django.generation.backends.base import torch_device

    device = torch_device(args.device)
    sizes = SMOKE if args.smoke else FULL
    repeats = args.repeats or (1 if args.smoke else 3)
    report: dict[str, Any] = {
        "device": torch.cuda.get_device_name(device) if device.startswith("cuda") else "cpu",
        "torch": torch.__version__,
        "smoke": args.smoke,
    }
    with tempfile.TemporaryDirectory(prefix="aigc-gpu-bench-") as tmp:
        folder = Path(tmp)
        setup_django(folder)
        for part, run in (
            ("diffusers", lambda: diffusers_part(sizes, device, folder / "sd", repeats)),
            ("builtin_copy", lambda: copy_part(sizes, device, repeats)),
        ):
            try:
                report[part] = run()
            except Exception as exc:  # report it and go on to the next part
                report[part] = {"error": f"{type(exc).__name__}: {exc}"}
                traceback.print_exc()

    print(f"device: {report['device']} (torch {report['torch']}){' [smoke]' if args.smoke else ''}")
    image = report["diffusers"]
    if "error" in image:
        print(f"diffusers: FAILED {image['error']}")
    else:
        print(
            f"diffusers: {image['images']} images {image['size'][0]}x{image['size'][1]} "
            f"(drawn at {image['drawn_at'][0]}x{image['drawn_at'][1]}), {image['steps']} steps, "
            f"{image['dtype']}, UNet {image['unet_parameters'] / 1e6:.1f}M parameters"
        )
        for label in ("batched", "one_at_a_time"):
            row = image[label]
            print(f"  {label:<14} {row['seconds']:>9.3f} s  {row['images_per_s']:>8.2f} images/s")
        print(f"  batched / one at a time: {image['speedup']:.2f}x")
    copy = report["builtin_copy"]
    if "error" in copy:
        print(f"builtin copy: FAILED {copy['error']}")
    else:
        print(f"builtin copy: {copy['briefs']} briefs (trained in {copy['train_seconds']} s)")
        for label in ("batched", "one_at_a_time"):
            row = copy[label]
            print(f"  {label:<14} {row['seconds']:>9.3f} s  {row['briefs_per_s']:>8.2f} briefs/s")
        print(f"  batched / one at a time: {copy['speedup']:.2f}x")
        print(f"  sample: {json.dumps(copy['sample'], ensure_ascii=False)}")
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "gpu_generation.json").write_text(json.dumps(report, indent=2, default=str))


if __name__ == "__main__":
    main()
