"""Profile quality on simulated shoppers: segment recovery and next-item ranking.

    .venv/bin/python benchmarks/profiles_quality.py [--visitors 5000] [--personas 6] [--seed 0]
        [--seeds 3] [--items-per-category 40] [--db aigc_bench_profiles]

For each of ``--seeds`` seeds (``--seed``, ``--seed`` + 1, ...) the simulator
(``aigc_django.profiles.simulator.simulate``) makes ``--visitors`` visitors, each following one
of ``--personas`` hidden personas. Their events are written with ``write_events`` (batches of
``INGEST["BATCH_SIZE"]``) into a fresh PostgreSQL database and the app's real
``build_profiles()`` runs at the app's DEFAULT ``PROFILES`` settings. Then:

(a) **Segment recovery**: the adjusted Rand index (``aigc_django.profiles.quality``) between
    the hidden persona and the learned segment, over the visitors placed in learned
    segments, and the share of simulated visitors so placed. Goal: ARI >= 0.8.

(b) **Next-item ranking**, leave-last-out over the full catalogue: the interactions are built
    exactly as the rebuild builds them (``read_events()`` then ``interactions()``: KIND_WEIGHTS
    times the HALF_LIFE_DAYS decay); each visitor's last interaction by raw event time is held
    out (``leave_last_out``). Trained on the rest, with the default FACTORS, ALS_ITERATIONS,
    ALS_REGULARIZATION and ALS_ALPHA: the app's torch ``fit_als``, ``implicit``'s CPU ALS
    (same hyperparameters; implicit 0.7 takes confidence as ``alpha * data``, so it gets
    ``data = 1 + ALS_ALPHA * w`` and ``alpha=1``: the same objective) and popularity (summed
    training weights). Every model ranks all items minus the visitor's training items;
    NDCG@10 of the held-out item. Goals: ALS >= 1.5x popularity and >= 0.98x implicit.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

# implicit warns (and slows down) when its BLAS has its own thread pool.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import common

ARI_GOAL = 0.8
POPULARITY_GOAL = 1.5
IMPLICIT_GOAL = 0.98


def load(sim_events: list[dict], batch_size: int) -> None:
    from aigc_django.tracking.ingest import write_events

    events = sorted(sim_events, key=lambda e: e["occurred_at"])
    for start in range(0, len(events), batch_size):
        write_events(events[start : start + batch_size])


def segment_recovery(truth: dict[str, int]) -> tuple[float, float, int, dict[str, int]]:
    """(ARI over placed visitors, share of simulated visitors placed, placed, sizes)."""
    from aigc_django.models import Profile, Segment
    from aigc_django.profiles.quality import adjusted_rand_index

    rows = Profile.objects.filter(segment__kind=Segment.Kind.LEARNED).values_list(
        "visitor_id", "segment__key"
    )
    found = {str(v): key for v, key in rows}
    placed = [v for v in truth if v in found]
    sizes: dict[str, int] = {}
    for v in placed:
        sizes[found[v]] = sizes.get(found[v], 0) + 1
    ari = adjusted_rand_index([truth[v] for v in placed], [found[v] for v in placed])
    return ari, len(placed) / len(truth), len(placed), sizes


def ranking(now, threads: int) -> dict[str, float | int]:
    """NDCG@10 of torch ALS, implicit ALS and popularity, leave-last-out."""
    import numpy as np
    import scipy.sparse as sp
    import torch
    from implicit.cpu.als import AlternatingLeastSquares

    from aigc_django.conf import aigc_settings
    from aigc_django.profiles import factorization as fz
    from aigc_django.profiles.features import decay, interactions, kind_weights, read_events

    options = aigc_settings.PROFILES
    columns = read_events()
    users, items, weights = interactions(columns, now)
    # The same mask as interactions(), to carry the raw event times along.
    kind = torch.frombuffer(columns.kind, dtype=torch.int64)
    item = torch.frombuffer(columns.item, dtype=torch.int64)
    times = torch.tensor(columns.time, dtype=torch.float64)
    w = kind_weights(columns.kinds.keys)[kind] * decay(times, now.timestamp())
    keep = (item >= 0) & (w > 0)
    times = times[keep]
    assert torch.equal(item[keep], items) and len(times) == len(users)
    n_users, n_items = len(columns.visitors), len(columns.items)
    split = fz.leave_last_out(users, items, times, weights)
    exclude = (split.train_users, split.train_items)
    hp = {
        "factors": options["FACTORS"],
        "regularization": options["ALS_REGULARIZATION"],
        "alpha": options["ALS_ALPHA"],
        "iterations": options["ALS_ITERATIONS"],
    }
    torch.set_num_threads(threads)
    t0 = time.perf_counter()
    als = fz.fit_als(
        split.train_users,
        split.train_items,
        split.train_weights,
        n_users,
        n_items,
        seed=options["SEED"],
        device="cpu",
        compute_loss=False,
        **hp,
    )
    torch_s = time.perf_counter() - t0

    t0 = time.perf_counter()
    matrix = sp.coo_matrix(
        (split.train_weights.numpy(), (split.train_users.numpy(), split.train_items.numpy())),
        shape=(n_users, n_items),
    ).tocsr()  # sums duplicates, as fit_als does
    matrix.data = (1.0 + hp["alpha"] * matrix.data).astype(np.float32)
    model = AlternatingLeastSquares(
        factors=hp["factors"],
        regularization=hp["regularization"],
        alpha=1.0,
        iterations=hp["iterations"],
        num_threads=threads,
        random_state=options["SEED"],
    )
    model.cg_steps = 3  # fit_als's default
    model.fit(matrix, show_progress=False)
    implicit_s = time.perf_counter() - t0
    peer = fz.Factorization(
        torch.from_numpy(np.ascontiguousarray(model.user_factors)),
        torch.from_numpy(np.ascontiguousarray(model.item_factors)),
    )
    out: dict[str, float | int] = {
        "items": n_items,
        "interactions": len(users),
        "tested": len(split.test_users),
        "torch_s": torch_s,
        "implicit_s": implicit_s,
    }
    for name, f in (("torch ALS", als), ("implicit ALS", peer)):
        ranked = fz.recommend(f.to("cpu"), split.test_users, k=10, exclude=exclude)
        out[name] = fz.ndcg_at_k(ranked, split.test_items, k=10)
    popular = fz.popularity_ranking(
        split.train_items,
        n_items,
        split.test_users,
        k=10,
        weights=split.train_weights,
        exclude=exclude,
    )
    out["popularity"] = fz.ndcg_at_k(popular, split.test_items, k=10)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--visitors", type=int, default=5000)
    parser.add_argument("--personas", type=int, default=6)
    parser.add_argument("--seed", type=int, default=0, help="first seed")
    parser.add_argument("--seeds", type=int, default=3, help="how many seeds from --seed")
    parser.add_argument("--items-per-category", type=int, default=40, help="simulator default")
    parser.add_argument("--threads", type=int, default=2, help="torch and implicit threads")
    parser.add_argument("--db", default="aigc_bench_profiles", help="PostgreSQL (recreated)")
    args = parser.parse_args()

    common.setup_django(db=args.db, mode="direct", settings=common.PROFILE_SETTINGS)
    from django.core.management import call_command

    from aigc_django.conf import aigc_settings
    from aigc_django.profiles.build import build_profiles
    from aigc_django.profiles.simulator import simulate

    options = aigc_settings.PROFILES
    print(
        f"Simulator: {args.visitors:,} visitors, {args.personas} personas, 8 categories x "
        f"{args.items_per_category} items; seeds {args.seed}..{args.seed + args.seeds - 1}."
    )
    print(
        "PROFILES (app defaults): "
        + ", ".join(
            f"{k}={options[k]}"
            for k in (
                "MIN_EVENTS",
                "SEGMENTS",
                "K_MIN",
                "K_MAX",
                "HALF_LIFE_DAYS",
                "FACTORS",
                "ALS_ITERATIONS",
                "ALS_REGULARIZATION",
                "ALS_ALPHA",
                "SEED",
            )
        )
    )
    print(common.machine())
    seg_rows, rank_rows = [], []
    aris, vs_pop, vs_imp = [], [], []
    for seed in range(args.seed, args.seed + args.seeds):
        call_command("flush", interactive=False, verbosity=0)
        now = common.utcnow()
        t0 = time.perf_counter()
        sim = simulate(
            visitors=args.visitors,
            personas=args.personas,
            items_per_category=args.items_per_category,
            seed=seed,
            now=now,
        )
        load(sim.events, aigc_settings.INGEST["BATCH_SIZE"])
        loaded = time.perf_counter() - t0
        t0 = time.perf_counter()
        report = build_profiles(now=now)
        built = time.perf_counter() - t0
        ari, share, placed, sizes = segment_recovery(sim.truth)
        aris.append(ari)
        print(
            f"  seed {seed}: {len(sim.events):,} events simulated and written in {loaded:.1f}s; "
            f"build_profiles {built:.1f}s {report.timings}; k={report.k}; "
            f"learned segment sizes {sorted(sizes.values(), reverse=True)}"
        )
        seg_rows.append(
            [
                seed,
                f"{len(sim.events):,}",
                report.k,
                f"{placed:,} / {args.visitors:,}",
                f"{share:.1%}",
                f"{ari:.3f}",
                "met" if ari >= ARI_GOAL else "NOT met",
            ]
        )
        r = ranking(now, args.threads)
        pop_ratio = r["torch ALS"] / r["popularity"]
        imp_ratio = r["torch ALS"] / r["implicit ALS"]
        vs_pop.append(pop_ratio)
        vs_imp.append(imp_ratio)
        rank_rows.append(
            [
                seed,
                f"{r['items']:,}",
                f"{r['interactions']:,}",
                f"{r['tested']:,}",
                f"{r['torch ALS']:.4f}",
                f"{r['implicit ALS']:.4f}",
                f"{r['popularity']:.4f}",
                f"{pop_ratio:.2f}x",
                f"{imp_ratio:.3f}x",
                f"{r['torch_s']:.1f} / {r['implicit_s']:.1f}",
            ]
        )
    print()
    print("(a) Segment recovery: hidden persona vs learned segment (build_profiles, defaults)")
    print(
        common.table(
            ["seed", "events", "k", "placed", "share placed", "ARI", f"ARI >= {ARI_GOAL}"],
            seg_rows,
        )
    )
    print()
    print("(b) Next-item ranking, leave-last-out, full catalogue, NDCG@10")
    print(
        common.table(
            [
                "seed",
                "items",
                "interactions",
                "tested",
                "torch ALS",
                "implicit ALS",
                "popularity",
                "ALS/pop",
                "ALS/implicit",
                "fit s torch / implicit",
            ],
            rank_rows,
        )
    )
    print()
    print(
        f"Goal ARI >= {ARI_GOAL}: "
        + ", ".join(f"{a:.3f}" for a in aris)
        + f" (median {statistics.median(aris):.3f}) -> "
        + ("met" if min(aris) >= ARI_GOAL else "NOT met (some seed below)")
    )
    print(
        f"Goal ALS >= {POPULARITY_GOAL}x popularity: "
        + ", ".join(f"{x:.2f}x" for x in vs_pop)
        + " -> "
        + ("met" if min(vs_pop) >= POPULARITY_GOAL else "NOT met (some seed below)")
    )
    print(
        f"Goal ALS >= {IMPLICIT_GOAL}x implicit: "
        + ", ".join(f"{x:.3f}x" for x in vs_imp)
        + " -> "
        + ("met" if min(vs_imp) >= IMPLICIT_GOAL else "NOT met (some seed below)")
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
