"""k-means: the app's torch ``kmeans()`` vs scikit-learn's ``KMeans``, side by side.

    .venv/bin/python benchmarks/kmeans.py [--n 1000000] [--d 50] [--ks 20,100] [--repeats 1]
    .venv/bin/python benchmarks/kmeans.py --device cuda [--compare-cpu]

The data are float32 blobs: ``--centres`` Gaussian centres (N(0, 1) per feature) with
per-centre spreads between 0.5 and 1.5 and uneven sizes, so neighbouring blobs overlap as
real profiles do. For every k, both sides get the same array, the same ``max_iter`` and the
same ``tol`` (the same rule: stop when no label changes or when the summed squared centroid
shift is at most ``tol`` times the mean feature variance):

* ``torch``: ``kmeans(x, k, max_iter=..., tol=..., seed=...)``, with
  ``torch.set_num_threads(--threads)``;
* ``sklearn``: ``KMeans(n_clusters=k, n_init=1, init="k-means++", max_iter=..., tol=...,
  random_state=...).fit(x)`` inside ``threadpool_limits(--threads)`` (its OpenMP and BLAS).

Runs alternate (torch first on even repeats, sklearn first on odd ones). Each side seeds
its own way, so the two start from different centroids and may need different numbers of
iterations; the table reports iterations and time per iteration beside the totals.
scikit-learn runs k-means++ on all rows. ``kmeans()`` runs it on a random sample of
max(50,000, 500 k) rows, then refines the seeds with Lloyd on that sample and on samples
three and nine times as large (while under half the rows), before its Lloyd iterations over
all rows; its time includes all that, its iteration count only the passes over all rows.
A second comparison, ``same seeds``, starts both sides from identical centroids
(scikit-learn's ``kmeans_plusplus`` on a 100,000-row sample), so that both run plain Lloyd
over all rows from the same point: like for like.

torch's and scikit-learn's OpenMP threads spin while they wait for work. When another
process holds one of the cores, torch (with thousands of short parallel regions per fit)
can slow down many times over, far more than scikit-learn (one region per iteration).
``--omp-wait-policy passive`` restarts the benchmark with ``OMP_WAIT_POLICY=PASSIVE``,
which applies to both sides and removes most of that noise, at some cost to both.

With ``--device cuda`` the torch side runs on the GPU (timed with synchronisation); add
``--compare-cpu`` to time it against torch on the CPU instead of against scikit-learn.
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from aigc_django.profiles.clustering import kmeans

GOAL_TIME = 0.3
GOAL_INERTIA = 0.01


def blobs(n: int, d: int, centres: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    middle = rng.normal(0.0, 1.0, size=(centres, d)).astype(np.float32)
    spread = rng.uniform(0.5, 1.5, size=centres).astype(np.float32)
    which = rng.choice(centres, size=n, p=rng.dirichlet(np.full(centres, 2.0)))
    x = rng.standard_normal((n, d), dtype=np.float32)
    x *= spread[which, None]
    x += middle[which]
    return x


def run_torch(x: torch.Tensor, k: int, args: argparse.Namespace, seed: int, init=None) -> dict:
    torch.set_num_threads(args.threads)  # threadpoolctl may have changed the shared OpenMP
    sync = torch.cuda.synchronize if x.device.type == "cuda" else (lambda: None)
    sync()
    started = time.perf_counter()
    result = kmeans(x, k, max_iter=args.max_iter, tol=args.tol, seed=seed, init=init)
    sync()
    return {
        "time": time.perf_counter() - started,
        "iterations": result.iterations,
        "converged": result.converged,
        "inertia": result.inertia,
    }


def run_sklearn(x: np.ndarray, k: int, args: argparse.Namespace, seed: int, init=None) -> dict:
    from sklearn.cluster import KMeans
    from threadpoolctl import threadpool_limits

    model = KMeans(
        n_clusters=k,
        n_init=1,
        init="k-means++" if init is None else init,
        max_iter=args.max_iter,
        tol=args.tol,
        random_state=seed,
    )
    with threadpool_limits(args.threads):
        started = time.perf_counter()
        model.fit(x)
        elapsed = time.perf_counter() - started
    return {
        "time": elapsed,
        "iterations": int(model.n_iter_),
        "converged": int(model.n_iter_) < args.max_iter,
        "inertia": float(model.inertia_),
    }


def alternate(first, second, repeats: int) -> tuple[list[dict], list[dict]]:
    """Run the two callables ``repeats`` times each, in alternating order."""
    a_runs, b_runs = [], []
    for r in range(repeats):
        if r % 2 == 0:
            a_runs.append(first(r))
            b_runs.append(second(r))
        else:
            b_runs.append(second(r))
            a_runs.append(first(r))
    return a_runs, b_runs


def show(label: str, runs: list[dict]) -> None:
    for r, run in enumerate(runs):
        print(
            f"  {label:<14} run {r}: {run['time']:8.2f} s  {run['iterations']:4d} iterations "
            f"({1000 * run['time'] / run['iterations']:7.1f} ms each)  "
            f"converged={run['converged']!s:<5}  inertia {run['inertia']:.6e}"
        )


def compare(name: str, a_label: str, a: list[dict], b_label: str, b: list[dict]) -> dict:
    time_ratio = statistics.median(x["time"] for x in a) / statistics.median(x["time"] for x in b)
    per_iter = statistics.median(x["time"] / x["iterations"] for x in a) / statistics.median(
        x["time"] / x["iterations"] for x in b
    )
    inertia = statistics.median(x["inertia"] / y["inertia"] for x, y in zip(a, b, strict=True))
    print(
        f"  -> {name}: time {a_label}/{b_label} = {time_ratio:.3f} (goal <= {GOAL_TIME}), "
        f"per iteration {per_iter:.3f}, inertia {a_label}/{b_label} = {inertia:.4f} "
        f"(goal within {GOAL_INERTIA:.0%})"
    )
    return {"time": time_ratio, "per_iter": per_iter, "inertia": inertia}


def bench_k(
    k: int, args: argparse.Namespace, x_np: np.ndarray, x_cpu: torch.Tensor, x_dev: torch.Tensor
) -> list[tuple[int, str, dict]]:
    print(f"k = {k}")
    seeds = [args.seed + r for r in range(args.repeats)]
    if args.compare_cpu:
        gpu, cpu = alternate(
            lambda r: run_torch(x_dev, k, args, seeds[r]),
            lambda r: run_torch(x_cpu, k, args, seeds[r]),
            args.repeats,
        )
        show(f"torch {args.device}", gpu)
        show("torch cpu", cpu)
        return [(k, "own seeds", compare("own seeds", "cuda", gpu, "cpu", cpu))]
    mine, peer = alternate(
        lambda r: run_torch(x_dev, k, args, seeds[r]),
        lambda r: run_sklearn(x_np, k, args, seeds[r]),
        args.repeats,
    )
    show("torch", mine)
    show("sklearn", peer)
    out = [(k, "own seeds", compare("own seeds", "torch", mine, "sklearn", peer))]
    if not args.no_same_seeds:
        from sklearn.cluster import kmeans_plusplus

        rng = np.random.default_rng(args.seed)
        sample = x_np[rng.choice(args.n, size=min(args.n, 100_000), replace=False)]
        inits = [kmeans_plusplus(sample, k, random_state=s)[0] for s in seeds]
        print("  same seeds:")
        mine, peer = alternate(
            lambda r: run_torch(x_dev, k, args, seeds[r], torch.from_numpy(inits[r])),
            lambda r: run_sklearn(x_np, k, args, seeds[r], inits[r]),
            args.repeats,
        )
        show("torch", mine)
        show("sklearn", peer)
        out.append((k, "same seeds", compare("same seeds", "torch", mine, "sklearn", peer)))
    print()
    return out


def machine(args: argparse.Namespace) -> str:
    lines = [
        f"nproc={os.cpu_count()}, Python {platform.python_version()}, torch {torch.__version__}"
        f" ({torch.get_num_threads()} threads)",
    ]
    if args.device == "cuda":
        lines.append(f"GPU: {torch.cuda.get_device_name()}")
    if not args.compare_cpu:
        import sklearn
        from threadpoolctl import threadpool_info

        pools = ", ".join(
            f"{p['internal_api']}({p.get('architecture') or p.get('prefix')})"
            for p in threadpool_info()
        )
        lines.append(f"scikit-learn {sklearn.__version__}; thread pools: {pools}")
    env = [
        f"{v}={os.environ[v]}" for v in ("OPENBLAS_CORETYPE", "OMP_WAIT_POLICY") if v in os.environ
    ]
    if env:
        lines.append(" ".join(env))
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--d", type=int, default=50)
    parser.add_argument("--ks", default="20,100", help="comma-separated values of k")
    parser.add_argument("--centres", type=int, default=200, help="Gaussian blobs in the data")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--max-iter", type=int, default=100)
    parser.add_argument("--tol", type=float, default=1e-4)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument(
        "--compare-cpu", action="store_true", help="with --device cuda: torch on the CPU as peer"
    )
    parser.add_argument(
        "--no-same-seeds", action="store_true", help="skip the comparison from identical seeds"
    )
    parser.add_argument(
        "--omp-wait-policy",
        choices=["active", "passive"],
        help="restart with OMP_WAIT_POLICY set (both sides); default: leave it as it is",
    )
    args = parser.parse_args()
    if args.compare_cpu and args.device != "cuda":
        parser.error("--compare-cpu needs --device cuda")
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: torch sees no CUDA device here")
    wanted = (args.omp_wait_policy or "").upper()
    if wanted and os.environ.get("OMP_WAIT_POLICY", "").upper() != wanted:
        # OpenMP reads the variable when it loads, which torch's import has done already.
        os.execve(
            sys.executable, [sys.executable, *sys.argv], {**os.environ, "OMP_WAIT_POLICY": wanted}
        )

    torch.set_num_threads(args.threads)
    print("$ .venv/bin/python benchmarks/kmeans.py " + shlex.join(sys.argv[1:]))
    print(machine(args))
    started = time.perf_counter()
    x_np = blobs(args.n, args.d, args.centres, args.seed)
    x_cpu = torch.from_numpy(x_np)
    x_dev = x_cpu.to(args.device)
    print(
        f"Data: {args.n:,} x {args.d} float32, {args.centres} blobs, made in "
        f"{time.perf_counter() - started:.1f}s; max_iter={args.max_iter}, tol={args.tol}, "
        f"repeats={args.repeats}\n"
    )
    # Warm up torch (thread pools, first-call set-up) outside the timings.
    kmeans(x_dev[:20_000], 8, max_iter=5)

    summary = []
    for k in [int(v) for v in args.ks.split(",")]:
        summary += bench_k(k, args, x_np, x_cpu, x_dev)

    peer_name = "torch cpu" if args.compare_cpu else "sklearn"
    print(f"\nSummary (ratios of medians; {args.device} torch vs {peer_name}):")
    print(f"{'k':>5}  {'start':<11} {'time':>7} {'per iter':>9} {'inertia':>8}")
    for k, name, r in summary:
        print(f"{k:>5}  {name:<11} {r['time']:7.3f} {r['per_iter']:9.3f} {r['inertia']:8.4f}")
    if not args.compare_cpu:
        own = [r for _, name, r in summary if name == "own seeds"]
        met_time = all(r["time"] <= GOAL_TIME for r in own)
        met_inertia = all(abs(r["inertia"] - 1) <= GOAL_INERTIA for r in own)
        print(
            f"Goals (own seeds): time <= {GOAL_TIME}x sklearn: {'met' if met_time else 'NOT met'}; "
            f"inertia within {GOAL_INERTIA:.0%}: {'met' if met_inertia else 'NOT met'}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
