"""The GAN and layout trainers on one torch thread against two, side by side.

    .venv/bin/python benchmarks/train_threads.py [--models gan,layout] [--products 48]
        [--gan-steps 60] [--layout-epochs 40] [--repeats 3] [--threads 1,2]

``train_gan_model()`` and ``train_layout_model()`` train on one CPU thread by default
(``threads=1``). This script checks that choice on the machine it runs on: the example
catalog (``seed_catalog``) in the throwaway site of ``gan_quality.py``, then each trainer
with ``threads=t`` for each thread count in turn, ``--repeats`` rounds, the order
alternating between rounds. Prints each run's seconds in the training loop (the artifact's
``train_seconds``), the medians and their ratio against the first thread count, and the load
average before and after: the answer depends on what else the cores are doing.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.gan_quality import setup_django


def compare(name: str, train: Callable[[int], Any], counts: list[int], repeats: int) -> None:
    """Run ``train(threads)`` for each count, ``repeats`` rounds alternating; print a table."""
    load_before = os.getloadavg()[0]
    seconds: dict[int, list[float]] = {count: [] for count in counts}
    for round_number in range(repeats):
        order = counts if round_number % 2 == 0 else counts[::-1]
        for count in order:
            started = time.perf_counter()
            artifact = train(count)
            wall = time.perf_counter() - started
            loop = float(artifact.metrics["train_seconds"])
            seconds[count].append(loop)
            print(
                f"  {name}, round {round_number + 1}, {count} thread(s): {loop:.1f}s in the "
                f"loop ({wall:.1f}s wall)",
                flush=True,
            )
    load_after = os.getloadavg()[0]
    first = statistics.median(seconds[counts[0]])
    print(
        f"{name}: {repeats} rounds alternating; nproc={os.cpu_count()}, load average "
        f"{load_before:.2f} before, {load_after:.2f} after"
    )
    print(f"{'threads':>8}{'median s':>10}{'vs ' + str(counts[0]) + ' thread(s)':>18}")
    for count in counts:
        median = statistics.median(seconds[count])
        print(f"{count:>8}{median:>10.1f}{median / first:>17.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", default="gan,layout", help="gan, layout or both")
    parser.add_argument("--products", type=int, default=48)
    parser.add_argument("--gan-steps", type=int, default=60)
    parser.add_argument("--layout-epochs", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", default="1,2", help="thread counts, comma-separated")
    args = parser.parse_args()
    counts = [int(t) for t in args.threads.split(",") if t.strip()]
    models = [m.strip() for m in args.models.split(",") if m.strip()]

    setup_django(tempfile.mkdtemp(prefix="aigc-train-threads-"))
    from django.core.management import call_command

    from aigc_django.generation.gan.train import train_gan_model
    from aigc_django.generation.layouts.train import train_layout_model

    trainers = {
        "gan": (
            f"GAN, {args.gan_steps} steps, {args.products} products",
            lambda threads: train_gan_model(steps=args.gan_steps, device="cpu", threads=threads),
            lambda: train_gan_model(steps=2, device="cpu"),
        ),
        "layout": (
            f"layout VAE, {args.layout_epochs} epochs",
            lambda threads: train_layout_model(
                epochs=args.layout_epochs, device="cpu", threads=threads
            ),
            lambda: train_layout_model(epochs=1, device="cpu"),
        ),
    }
    with open(os.devnull, "w") as quiet:
        call_command("seed_catalog", "--products", str(args.products), stdout=quiet)
    for model in models:
        name, train, warm_up = trainers[model]
        warm_up()  # imports, data loading
        compare(name, train, counts, args.repeats)


if __name__ == "__main__":
    main()
