"""GAN training on one torch thread against two, side by side.

    .venv/bin/python benchmarks/gan_threads.py [--products 48] [--steps 60] [--repeats 3]
        [--threads 1,2]

``train_gan_model()`` trains on one CPU thread by default (``threads=1``). This script checks
that choice on the machine it runs on: the example catalog (``seed_catalog``) in the
throwaway site of ``gan_quality.py``, then ``train_gan_model(steps=..., threads=t)`` for each
thread count in turn, ``--repeats`` rounds, the order alternating between rounds. Prints
each run's seconds in the training loop (the artifact's ``train_seconds``), the medians and
their ratio against the first thread count, and the load average before and after: the
answer depends on what else the cores are doing.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.gan_quality import setup_django


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--products", type=int, default=48)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", default="1,2", help="thread counts, comma-separated")
    args = parser.parse_args()
    counts = [int(t) for t in args.threads.split(",") if t.strip()]

    setup_django(tempfile.mkdtemp(prefix="aigc-gan-threads-"))
    from django.core.management import call_command

    from aigc_django.generation.gan.train import train_gan_model

    with open(os.devnull, "w") as quiet:
        call_command("seed_catalog", "--products", str(args.products), stdout=quiet)
    train_gan_model(steps=2, device="cpu", threads=1)  # warm-up: imports, image loading

    load_before = os.getloadavg()[0]
    seconds: dict[int, list[float]] = {count: [] for count in counts}
    for round_number in range(args.repeats):
        order = counts if round_number % 2 == 0 else counts[::-1]
        for count in order:
            started = time.perf_counter()
            artifact = train_gan_model(steps=args.steps, device="cpu", threads=count)
            wall = time.perf_counter() - started
            loop = float(artifact.metrics["train_seconds"])
            seconds[count].append(loop)
            print(
                f"  round {round_number + 1}, {count} thread(s): {loop:.1f}s in the loop "
                f"({wall:.1f}s wall)",
                flush=True,
            )
    load_after = os.getloadavg()[0]

    first = statistics.median(seconds[counts[0]])
    print(
        f"GAN training, {args.steps} steps, {args.products} products, {args.repeats} rounds "
        f"alternating; nproc={os.cpu_count()}, load average {load_before:.2f} before, "
        f"{load_after:.2f} after"
    )
    print(f"{'threads':>8}{'median s':>10}{'vs ' + str(counts[0]) + ' thread(s)':>18}")
    for count in counts:
        median = statistics.median(seconds[count])
        print(f"{count:>8}{median:>10.1f}{median / first:>17.2f}x")


if __name__ == "__main__":
    main()
