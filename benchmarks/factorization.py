"""Implicit-feedback ALS: the app's torch ``fit_als`` vs ``implicit``'s CPU ALS, side by side.

    .venv/bin/python benchmarks/factorization.py [--users 200000] [--items 20000]
        [--interactions 5000000] [--factors 64] [--iterations 15] [--repeats 3]
        [--device cuda --compare-cpu]

Synthetic shop data with structure: every user has a primary and a secondary taste
cluster, every item a home cluster, and item popularity is Zipf-like (inside clusters too),
so a model has to learn tastes to beat popularity. Events are views, carts and purchases
weighted 1, 4 and 8 (the app's KIND_WEIGHTS); repeated (user, item) pairs sum.

Each user's last interaction is held out (``leave_last_out``); both models train on the rest
with equal factors, regularization, iterations, CG steps (3), the same confidence
``1 + alpha * weight`` and the same number of threads. implicit 0.7 takes its confidence
straight from the matrix (``c = alpha_implicit * data``), so it gets ``data = 1 + alpha * w``
and ``alpha=1.0``: the same objective, solved by the same CG algorithm. Its BLAS pool is
limited to one thread, as implicit asks. Threads are equal: ``torch.set_num_threads(N)``
(``fit_als`` then solves row chunks on N worker threads) and implicit's ``num_threads=N``.
The timed torch call starts from COO tensors (its CSR build included) and skips the
per-iteration loss, which implicit also skips by default; implicit is timed for ``fit()``
alone and, as "from COO", with the scipy COO -> CSR conversion a caller needs. Runs
alternate in order between repeats; the machine may be shared, so the table gives the
best and the median wall time and the CPU time of each.

Both models are ranked by the same function (``recommend``, training items excluded) on
the same sample of test users; NDCG@10 has one relevant item per user.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

# implicit warns (and slows down) when its BLAS has its own thread pool.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np
import torch

from aigc_django.profiles import factorization as fz

RESULTS = Path(__file__).resolve().parent / "results" / "factorization.txt"
TIME_GOAL = 1.5  # torch / implicit wall time, at most
NDCG_GOAL = 0.98  # torch / implicit NDCG@10, at least
KINDS = ((1.0, 0.85), (4.0, 0.10), (8.0, 0.05))  # (weight, share): view, cart, purchase


def synthetic(
    n_users: int, n_items: int, n: int, clusters: int, seed: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(users, items, weights, times) of ``n`` interactions with taste clusters."""
    g = torch.Generator().manual_seed(seed)
    # Busy users do most of the clicking: lognormal activity, everyone at least once.
    activity = torch.exp(torch.randn(n_users, generator=g) * 1.0)
    extra = torch.multinomial(activity, n - n_users, replacement=True, generator=g)
    counts = torch.bincount(extra, minlength=n_users) + 1
    users = torch.repeat_interleave(torch.arange(n_users), counts)

    # Item rank 0 is the most popular overall; items in a cluster keep that order.
    item_of_rank = torch.randperm(n_items, generator=g)
    home = torch.randint(0, clusters, (n_items,), generator=g)
    by_cluster = torch.argsort(home * n_items + torch.arange(n_items))  # ranks, grouped
    size = torch.bincount(home, minlength=clusters)
    start = torch.cumsum(size, 0) - size

    primary = torch.randint(0, clusters, (n_users,), generator=g)
    secondary = torch.randint(0, clusters, (n_users,), generator=g)
    source = torch.rand(n, generator=g)
    cluster = torch.where(source < 0.65, primary[users], secondary[users])
    skew = torch.rand(n, generator=g) ** 2.5
    in_cluster = by_cluster[
        start[cluster] + (skew * size[cluster]).long().clamp(max=size[cluster] - 1)
    ]
    overall = (torch.rand(n, generator=g) ** 4 * n_items).long()
    rank = torch.where(source < 0.85, in_cluster, overall)
    items = item_of_rank[rank]

    kind = torch.multinomial(torch.tensor([s for _, s in KINDS]), n, replacement=True, generator=g)
    weights = torch.tensor([w for w, _ in KINDS])[kind]
    times = torch.rand(n, generator=g, dtype=torch.float64) * 30 * 86400
    return users, items, weights, times


def fit_torch(split: fz.Split, args: argparse.Namespace, n_users: int, n_items: int, device: str):
    def run() -> fz.Factorization:
        f = fz.fit_als(
            split.train_users,
            split.train_items,
            split.train_weights,
            n_users,
            n_items,
            factors=args.factors,
            regularization=args.regularization,
            alpha=args.alpha,
            iterations=args.iterations,
            cg_steps=args.cg_steps,
            seed=args.seed,
            device=device,
            compute_loss=False,
        )
        if f.device.type == "cuda":
            torch.cuda.synchronize()
        return f

    return run


def fit_implicit(split: fz.Split, args: argparse.Namespace, n_users: int, n_items: int):
    import scipy.sparse as sp
    from implicit.cpu.als import AlternatingLeastSquares

    def run() -> tuple[fz.Factorization, float]:
        started = time.perf_counter()
        matrix = sp.coo_matrix(
            (split.train_weights.numpy(), (split.train_users.numpy(), split.train_items.numpy())),
            shape=(n_users, n_items),
        ).tocsr()  # sums duplicates
        matrix.data = (1.0 + args.alpha * matrix.data).astype(np.float32)
        convert = time.perf_counter() - started
        model = AlternatingLeastSquares(
            factors=args.factors,
            regularization=args.regularization,
            alpha=1.0,
            iterations=args.iterations,
            num_threads=args.threads,
            random_state=args.seed,
        )
        model.cg_steps = args.cg_steps
        model.fit(matrix, show_progress=False)
        f = fz.Factorization(
            torch.from_numpy(np.ascontiguousarray(model.user_factors)),
            torch.from_numpy(np.ascontiguousarray(model.item_factors)),
        )
        return f, convert

    return run


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=200_000)
    parser.add_argument("--items", type=int, default=20_000)
    parser.add_argument("--interactions", type=int, default=5_000_000)
    parser.add_argument("--clusters", type=int, default=40)
    parser.add_argument("--factors", type=int, default=64)
    parser.add_argument("--iterations", type=int, default=15)
    parser.add_argument("--cg-steps", type=int, default=3)
    # The app's PROFILES defaults (ALS_REGULARIZATION, ALS_ALPHA).
    parser.add_argument("--regularization", type=float, default=0.05)
    parser.add_argument("--alpha", type=float, default=2.0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--eval-users", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu", help="where fit_als runs: cpu or cuda")
    parser.add_argument(
        "--compare-cpu", action="store_true", help="with --device cuda: also time fit_als on CPU"
    )
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    if args.interactions < args.users:
        parser.error("--interactions must be at least --users (everyone acts once).")

    torch.set_num_threads(args.threads)
    lines: list[str] = []

    def say(line: str = "") -> None:
        print(line, flush=True)
        lines.append(line)

    import implicit

    say(
        " ".join(
            ["$ .venv/bin/python benchmarks/factorization.py", *map(shlex.quote, sys.argv[1:])]
        )
    )
    say(
        f"nproc={_nproc()}, Python {platform.python_version()}, torch {torch.__version__} "
        f"({torch.get_num_threads()} threads), implicit {implicit.__version__} "
        f"(num_threads={args.threads}), fit_als on {args.device}"
    )
    started = time.perf_counter()
    users, items, weights, times = synthetic(
        args.users, args.items, args.interactions, args.clusters, args.seed
    )
    split = fz.leave_last_out(users, items, times, weights)
    n_users, n_items = args.users, args.items
    pairs = torch.unique(split.train_users * n_items + split.train_items).numel()
    say(
        f"Data: {args.users:,} users x {args.items:,} items, {args.interactions:,} interactions "
        f"({pairs:,} distinct training pairs), {len(split.test_users):,} test users; "
        f"made in {time.perf_counter() - started:.1f}s."
    )
    say(
        f"Hyperparameters (both): factors={args.factors}, regularization={args.regularization}, "
        f"alpha={args.alpha} (confidence 1 + alpha*w), iterations={args.iterations}, "
        f"cg_steps={args.cg_steps}."
    )

    runs = {"torch": fit_torch(split, args, n_users, n_items, args.device)}
    if args.device != "cpu" and args.compare_cpu:
        runs["torch cpu"] = fit_torch(split, args, n_users, n_items, "cpu")
    peer = fit_implicit(split, args, n_users, n_items)
    times_s: dict[str, list[float]] = {name: [] for name in [*runs, "implicit", "implicit+coo"]}
    cpu_s: dict[str, list[float]] = {name: [] for name in times_s}
    models: dict[str, fz.Factorization] = {}
    for repeat in range(args.repeats):
        order = [*runs, "implicit"]
        if repeat % 2:
            order.reverse()
        for name in order:
            t0, c0 = time.perf_counter(), _cpu_seconds()
            if name == "implicit":
                models[name], convert = peer()
                total, cpu = time.perf_counter() - t0, _cpu_seconds() - c0
                times_s["implicit"].append(total - convert)
                times_s["implicit+coo"].append(total)
                cpu_s["implicit"].append(cpu)  # the COO conversion is a sliver of it
                cpu_s["implicit+coo"].append(cpu)
            else:
                models[name] = runs[name]()
                times_s[name].append(time.perf_counter() - t0)
                cpu_s[name].append(_cpu_seconds() - c0)
            say(
                f"  run {repeat + 1} {name}: {times_s[name][-1]:.1f}s wall, "
                f"{cpu_s[name][-1]:.1f}s CPU"
            )

    rng = torch.Generator().manual_seed(args.seed + 1)
    pick = torch.randperm(len(split.test_users), generator=rng)[: args.eval_users]
    eval_users, eval_items = split.test_users[pick], split.test_items[pick]
    exclude = (split.train_users, split.train_items)
    ndcg: dict[str, float] = {}
    for name, model in models.items():
        ranked = fz.recommend(model.to("cpu"), eval_users, k=10, exclude=exclude)
        ndcg[name] = fz.ndcg_at_k(ranked, eval_items, k=10)
    popular = fz.popularity_ranking(
        split.train_items, n_items, eval_users, k=10, weights=split.train_weights, exclude=exclude
    )
    ndcg["popularity"] = fz.ndcg_at_k(popular, eval_items, k=10)

    best = {name: min(values) for name, values in times_s.items()}
    say()
    say(
        f"| model | best wall time (s) of {args.repeats} | median wall (s) | "
        f"CPU time (s) of the best | NDCG@10 ({len(pick):,} users) |"
    )
    say("|---|---:|---:|---:|---:|")
    for name in [*runs, "implicit", "implicit+coo", "popularity"]:
        wall = median = cpu = "-"
        if name in best:
            wall, median = f"{best[name]:.1f}", f"{statistics.median(times_s[name]):.1f}"
            if cpu_s[name]:
                cpu = f"{cpu_s[name][times_s[name].index(best[name])]:.1f}"
        score = ndcg.get("implicit" if name == "implicit+coo" else name, float("nan"))
        say(f"| {name} | {wall} | {median} | {cpu} | {score:.4f} |")
    say()
    time_ratio = best["torch"] / best["implicit"]
    coo_ratio = best["torch"] / best["implicit+coo"]
    ndcg_ratio = ndcg["torch"] / ndcg["implicit"]
    say(
        f"time torch/implicit fit(): {time_ratio:.2f} (goal <= {TIME_GOAL}: "
        f"{'met' if time_ratio <= TIME_GOAL else 'MISSED'}); "
        f"torch/implicit incl. COO->CSR: {coo_ratio:.2f}"
    )
    if "torch cpu" in best:
        say(f"time torch {args.device} / torch cpu: {best['torch'] / best['torch cpu']:.3f}")
    say(
        f"time torch/implicit, median of {args.repeats}: "
        f"{statistics.median(times_s['torch']) / statistics.median(times_s['implicit']):.2f}"
    )
    say(
        f"NDCG@10 torch/implicit: {ndcg_ratio:.3f} (goal >= {NDCG_GOAL}: "
        f"{'met' if ndcg_ratio >= NDCG_GOAL else 'MISSED'}); "
        f"torch/popularity: {ndcg['torch'] / ndcg['popularity']:.2f}"
    )
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text("\n".join(lines) + "\n")
    print(f"(written to {args.output})")
    return 0


def _cpu_seconds() -> float:
    """User + system CPU time of this process and its threads so far."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _nproc() -> str:
    try:
        return subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip()
    except OSError:
        return str(os.cpu_count())


if __name__ == "__main__":
    sys.exit(main())
