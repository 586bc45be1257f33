"""Worker-cached, batched copy generation against loading the model in every task.

    .venv/bin/python benchmarks/copy_batching.py [--items 48] [--per-category 50] [--batch 8]

On the example-sized shop of ``copy_quality.py`` (trained once, at the defaults), the same
``--items`` briefs (one variant each, the three segments in turn) are generated three ways:

- per task (the peer): every item is its own task that creates a fresh ``builtin`` backend
  (finding the active ``ModelArtifact`` and reading its weights from disk, as a task that
  loads its model would) and generates that one item;
- cached, one at a time: the process's backend (loaded once) generates one item per call;
- cached and batched (the app's way): the process's backend generates ``--batch`` items per
  call, all briefs, fields and candidates of a batch in one tensor.

It prints items/s each way and the ratio of the app's way to the peer (goal >= 3x), and checks
that the three ways wrote the same copy (sampling is keyed by each brief's seed).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

GOAL = 3.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=48)
    parser.add_argument("--per-category", type=int, default=50)
    parser.add_argument("--batch", type=int, default=8)
    args = parser.parse_args()

    from benchmarks import copy_quality

    copy_quality.setup_django()
    import torch

    from aigc_django.generation.backends import copy_backend
    from aigc_django.generation.backends.builtin_copy import BuiltinCopyBackend
    from aigc_django.generation.copymodel.train import train_copy_model
    from aigc_django.models import Segment, Slot

    copy_quality.seed_shop(args.per_category)
    artifact = train_copy_model()
    slot = Slot.objects.get(key="home-hero")
    segments = list(Segment.objects.filter(key__in=copy_quality.SEGMENTS).order_by("key"))
    briefs = [
        copy_quality.brief(segments[n % len(segments)], slot, seed=1000 + n)
        for n in range(args.items)
    ]
    print(
        f"Copy model v{artifact.version} ({artifact.metrics['parameters']:,} parameters), "
        f"{args.items} items, fields {copy_quality.FIELDS}, torch {torch.__version__} on CPU, "
        f"{torch.get_num_threads()} threads."
    )

    def per_task() -> list[dict]:
        out = []
        for brief in briefs:
            backend = BuiltinCopyBackend("task", {"DEVICE": "cpu"})
            out += [d.fields for d in backend.generate([brief])]
        return out

    cached = copy_backend()

    def cached_single() -> list[dict]:
        return [cached.generate([brief])[0].fields for brief in briefs]

    def cached_batched() -> list[dict]:
        out = []
        for start in range(0, len(briefs), args.batch):
            out += [d.fields for d in cached.generate(briefs[start : start + args.batch])]
        return out

    cached.generate(briefs[:1])  # the worker's first task loads the model once
    per_task_fields = None
    rows = []
    for name, run in (
        ("per task: load + 1 item", per_task),
        ("cached, 1 item per call", cached_single),
        (f"cached, batches of {args.batch}", cached_batched),
    ):
        started = time.perf_counter()
        fields = run()
        seconds = time.perf_counter() - started
        rows.append((name, seconds, args.items / seconds))
        per_task_fields = per_task_fields or fields
        same = sum(a == b for a, b in zip(fields, per_task_fields, strict=True))
        rows[-1] += (same,)

    print(f"\n{'way':<28} {'seconds':>8} {'items/s':>8} {'same copy':>10}")
    for name, seconds, rate, same in rows:
        print(f"{name:<28} {seconds:>8.2f} {rate:>8.2f} {same:>6}/{args.items}")
    ratio = rows[2][2] / rows[0][2]
    print(
        f"\nBatched, worker-cached vs per-task loading: {ratio:.1f}x items/s "
        f"(goal >= {GOAL:.0f}x: {'met' if ratio >= GOAL else 'NOT met'}); "
        f"caching alone {rows[1][2] / rows[0][2]:.1f}x, batching on top "
        f"{rows[2][2] / rows[1][2]:.1f}x."
    )


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "2")
    main()
