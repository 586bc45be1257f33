"""Implicit-feedback ALS (profiles/factorization.py): quality, determinism, files, errors."""

from __future__ import annotations

import itertools

import pytest
import torch

from aigc_django.profiles import factorization as fz

N_USERS, N_ITEMS, TASTES = 600, 240, 6


def planted(
    n_users: int = N_USERS, n_items: int = N_ITEMS, per_user: int = 24, seed: int = 0
) -> dict[str, torch.Tensor]:
    """Users with one of TASTES hidden tastes; each taste likes its own block of items most,
    with item popularity skewed inside a block and some popular noise on top."""
    g = torch.Generator().manual_seed(seed)
    taste = torch.randint(0, TASTES, (n_users,), generator=g)
    block = n_items // TASTES
    n = n_users * per_user
    users = torch.arange(n_users).repeat_interleave(per_user)
    in_block = taste[users] * block + (torch.rand(n, generator=g) ** 2 * block).long()
    anywhere = (torch.rand(n, generator=g) ** 3 * n_items).long()
    items = torch.where(torch.rand(n, generator=g) < 0.8, in_block, anywhere)
    weights = torch.tensor([1.0, 4.0, 8.0])[
        torch.multinomial(torch.tensor([0.85, 0.1, 0.05]), n, replacement=True, generator=g)
    ]
    times = torch.rand(n, generator=g, dtype=torch.float64)
    return {"users": users, "items": items, "weights": weights, "times": times, "taste": taste}


@pytest.fixture(scope="module")
def data() -> dict[str, torch.Tensor]:
    return planted()


@pytest.fixture(scope="module")
def split(data: dict[str, torch.Tensor]) -> fz.Split:
    return fz.leave_last_out(data["users"], data["items"], data["times"], data["weights"])


def fit(split: fz.Split, **options) -> fz.Factorization:
    options = {"factors": 16, "regularization": 0.05, "alpha": 2.0, "iterations": 10, **options}
    return fz.fit_als(
        split.train_users, split.train_items, split.train_weights, N_USERS, N_ITEMS, **options
    )


def ndcg(f: fz.Factorization, split: fz.Split) -> float:
    exclude = (split.train_users, split.train_items)
    return fz.ndcg_at_k(fz.recommend(f, split.test_users, 10, exclude), split.test_items)


def test_als_beats_popularity_on_planted_tastes(split: fz.Split) -> None:
    als = ndcg(fit(split), split)
    popular = fz.ndcg_at_k(
        fz.popularity_ranking(
            split.train_items,
            N_ITEMS,
            split.test_users,
            10,
            weights=split.train_weights,
            exclude=(split.train_users, split.train_items),
        ),
        split.test_items,
    )
    assert als > 1.5 * popular
    assert als > 0.1


def test_training_loss_decreases(split: fz.Split) -> None:
    f = fit(split, iterations=8)
    loss = f.config["loss"]
    assert len(loss) == 8
    assert loss[-1] < 0.8 * loss[0]
    assert all(later <= earlier * 1.001 for earlier, later in itertools.pairwise(loss))
    again = fz.training_loss(f, split.train_users, split.train_items, split.train_weights)
    assert again == pytest.approx(loss[-1], rel=1e-4)


def test_same_seed_same_factors_other_seed_other_factors(split: fz.Split) -> None:
    a, b, c = fit(split, seed=3), fit(split, seed=3), fit(split, seed=4)
    assert torch.equal(a.user_factors, b.user_factors)
    assert torch.equal(a.item_factors, b.item_factors)
    assert not torch.equal(a.item_factors, c.item_factors)


def test_duplicate_pairs_are_summed() -> None:
    users = torch.tensor([0, 0, 0, 1, 1, 2, 2, 3])
    items = torch.tensor([0, 0, 1, 1, 2, 2, 3, 0])
    weights = torch.tensor([1.0, 2.0, 1.0, 1.0, 1.0, 4.0, 1.0, 1.0])
    summed = fz.fit_als(
        torch.tensor([0, 0, 1, 1, 2, 2, 3]),
        torch.tensor([0, 1, 1, 2, 2, 3, 0]),
        torch.tensor([3.0, 1.0, 1.0, 1.0, 4.0, 1.0, 1.0]),
        4,
        4,
        factors=3,
    )
    repeated = fz.fit_als(users, items, weights, 4, 4, factors=3)
    assert torch.allclose(summed.user_factors, repeated.user_factors)
    assert summed.config["interactions"] == repeated.config["interactions"] == 7


def test_users_and_items_without_interactions_get_zero_factors() -> None:
    f = fz.fit_als(torch.tensor([0, 0, 2]), torch.tensor([0, 1, 1]), torch.ones(3), 4, 3)
    assert torch.count_nonzero(f.user_factors[[1, 3]]) == 0
    assert torch.count_nonzero(f.item_factors[2]) == 0
    assert torch.count_nonzero(f.user_factors[0]) > 0


def test_save_load_round_trip(split: fz.Split, tmp_path) -> None:
    f = fit(split, iterations=3)
    fz.save(f, tmp_path / "v1")
    assert sorted(p.name for p in (tmp_path / "v1").iterdir()) == [
        "config.json",
        "model.safetensors",
    ]
    loaded = fz.load(tmp_path / "v1")
    assert torch.equal(loaded.user_factors, f.user_factors)
    assert torch.equal(loaded.item_factors, f.item_factors)
    assert loaded.config["factors"] == 16
    assert loaded.config["alpha"] == 2.0
    assert loaded.config["loss"] == pytest.approx(f.config["loss"])


def test_load_refuses_a_newer_format(split: fz.Split, tmp_path) -> None:
    f = fit(split, iterations=1)
    fz.save(f, tmp_path)
    config = (tmp_path / "config.json").read_text()
    (tmp_path / "config.json").write_text(
        config.replace('"format_version": 1', '"format_version": 99')
    )
    with pytest.raises(ValueError, match="format version 99"):
        fz.load(tmp_path)


def test_recommend_leaves_out_seen_items(split: fz.Split) -> None:
    f = fit(split, iterations=3)
    rows = torch.arange(50)
    plain = fz.recommend(f, rows, k=10)
    ranked = fz.recommend(f, rows, k=10, exclude=(split.train_users, split.train_items))
    seen = set(zip(split.train_users.tolist(), split.train_items.tolist(), strict=True))
    assert any((int(u), int(i)) in seen for u, row in zip(rows, plain, strict=True) for i in row)
    for u, row in zip(rows.tolist(), ranked.tolist(), strict=True):
        assert len(set(row)) == 10
        assert not any((u, i) in seen for i in row)


def test_recommend_pads_with_minus_one_when_too_few_items_are_left() -> None:
    f = fz.fit_als(torch.tensor([0, 0, 1]), torch.tensor([0, 1, 2]), torch.ones(3), 2, 4)
    ranked = fz.recommend(
        f, torch.tensor([0, 1, 0]), k=4, exclude=(torch.tensor([0, 0]), torch.tensor([0, 1]))
    )
    assert ranked[0].tolist()[2:] == [-1, -1]
    assert sorted(ranked[0].tolist()[:2]) == [2, 3]
    assert torch.equal(ranked[0], ranked[2])
    assert -1 not in ranked[1].tolist()


def test_top_items_for_a_taste_come_from_its_block(
    data: dict[str, torch.Tensor], split: fz.Split
) -> None:
    f = fit(split)
    block = N_ITEMS // TASTES
    for taste in range(TASTES):
        mean = f.user_factors[data["taste"] == taste].mean(0)
        top = fz.top_items_for_vector(f, mean, k=10)
        assert top.shape == (10,)
        assert (top // block == taste).float().mean() >= 0.8
    batch = torch.stack([f.user_factors[data["taste"] == t].mean(0) for t in range(2)])
    assert fz.top_items_for_vector(f, batch, k=5).shape == (2, 5)
    left_out = fz.top_items_for_vector(f, batch[0], k=5, exclude_items=top[:3])
    assert not set(left_out.tolist()) & set(top[:3].tolist())


def test_similar_items_share_a_block(split: fz.Split) -> None:
    f = fit(split)
    block = N_ITEMS // TASTES
    seeds = torch.arange(0, N_ITEMS, block)  # the most popular item of every block
    similar = fz.similar_items(f, seeds, k=5)
    assert similar.shape == (TASTES, 5)
    assert not (similar == seeds.unsqueeze(1)).any()
    assert (similar // block == (seeds // block).unsqueeze(1)).float().mean() >= 0.8


def test_progress_is_reported_after_every_iteration(split: fz.Split) -> None:
    calls: list[tuple[int, int]] = []
    fit(split, iterations=3, progress=lambda done, total: calls.append((done, total)))
    assert calls == [(1, 3), (2, 3), (3, 3)]


def test_leave_last_out_holds_out_the_latest_item() -> None:
    users = torch.tensor([0, 0, 0, 1, 2, 2, 2])
    items = torch.tensor([5, 6, 5, 7, 8, 8, 9])
    times = torch.tensor([1.0, 2.0, 3.0, 1.0, 5.0, 6.0, 4.0])
    split = fz.leave_last_out(users, items, times)
    # user 0: last is item 5 (t=3); the earlier view of item 5 leaves training too.
    # user 1: a single interaction, not tested. user 2: item 8 twice, only 9 stays.
    assert split.test_users.tolist() == [0, 2]
    assert split.test_items.tolist() == [5, 8]
    train = sorted(zip(split.train_users.tolist(), split.train_items.tolist(), strict=True))
    assert train == [(0, 6), (1, 7), (2, 9)]
    assert split.train_weights.tolist() == [1.0, 1.0, 1.0]


def test_ndcg_at_k_scores_the_rank_of_the_held_out_item() -> None:
    ranked = torch.tensor([[3, 1, 2], [1, 2, 3], [4, 5, 6]])
    held_out = torch.tensor([3, 3, 3])
    expected = (1.0 + 1.0 / 2.0) / 3  # rank 0 -> 1, rank 2 -> 1/log2(4), missing -> 0
    assert fz.ndcg_at_k(ranked, held_out, k=10) == pytest.approx(expected)
    assert fz.ndcg_at_k(ranked, held_out, k=1) == pytest.approx(1 / 3)


@pytest.mark.parametrize(
    ("users", "items", "weights", "message"),
    [
        ([0, 1], [0], [1.0, 1.0], "same length"),
        ([0, 5], [0, 1], [1.0, 1.0], r"users must lie in \[0, 3\)"),
        ([0, -1], [0, 1], [1.0, 1.0], r"users must lie in \[0, 3\)"),
        ([0, 1], [0, 9], [1.0, 1.0], r"items must lie in \[0, 4\)"),
        ([0, 1], [0, 1], [1.0, -2.0], "must be >= 0"),
        ([0, 1], [0, 1], [1.0, float("nan")], "NaN"),
        ([0, 1], [0, 1], [1.0, float("inf")], "NaN or infinite"),
        ([0, 1], [0, 1], [0.0, 0.0], "no interaction has a positive weight"),
        ([], [], [], "no interaction has a positive weight"),
    ],
)
def test_bad_interactions_raise_clear_errors(users, items, weights, message) -> None:
    with pytest.raises(ValueError, match=message):
        fz.fit_als(
            torch.tensor(users, dtype=torch.int64),
            torch.tensor(items, dtype=torch.int64),
            torch.tensor(weights, dtype=torch.float32),
            3,
            4,
        )


@pytest.mark.parametrize(
    ("option", "message"),
    [
        ({"factors": 0}, "factors"),
        ({"regularization": -1.0}, "regularization"),
        ({"alpha": float("nan")}, "alpha"),
        ({"iterations": -1}, "iterations"),
        ({"cg_steps": 0}, "cg_steps"),
    ],
)
def test_bad_hyperparameters_raise_clear_errors(option, message) -> None:
    with pytest.raises(ValueError, match=message):
        fz.fit_als(torch.tensor([0]), torch.tensor([0]), torch.ones(1), 1, 1, **option)


def test_float_indices_are_refused() -> None:
    with pytest.raises(ValueError, match="integer"):
        fz.fit_als(torch.tensor([0.0]), torch.tensor([0]), torch.ones(1), 1, 1)


def test_recommend_refuses_unknown_users(split: fz.Split) -> None:
    f = fit(split, iterations=1)
    with pytest.raises(ValueError, match="user_rows"):
        fz.recommend(f, torch.tensor([N_USERS]))


# ------------------------------------------------------------------- against implicit


def implicit_model(split: fz.Split, factors: int, alpha: float, regularization: float, iters: int):
    """implicit 0.7's CPU ALS on the same objective: it reads the confidence straight from
    the matrix (c = its alpha * data), so it gets data = 1 + alpha * w and alpha = 1."""
    implicit_als = pytest.importorskip("implicit.cpu.als")
    sp = pytest.importorskip("scipy.sparse")
    threadpoolctl = pytest.importorskip("threadpoolctl")
    matrix = sp.coo_matrix(
        (split.train_weights.numpy(), (split.train_users.numpy(), split.train_items.numpy())),
        shape=(N_USERS, N_ITEMS),
    ).tocsr()
    matrix.data = (1.0 + alpha * matrix.data).astype("float32")
    # implicit warns unless its BLAS runs single-threaded, as it recommends.
    with threadpoolctl.threadpool_limits(1, "blas"):
        model = implicit_als.AlternatingLeastSquares(
            factors=factors,
            regularization=regularization,
            alpha=1.0,
            iterations=iters,
            num_threads=1,
            random_state=0,
        )
    return model, matrix


def test_ndcg_is_close_to_implicit(split: fz.Split) -> None:
    model, matrix = implicit_model(split, 16, 2.0, 0.05, 10)
    model.fit(matrix, show_progress=False)
    theirs = fz.Factorization(
        torch.from_numpy(model.user_factors.copy()), torch.from_numpy(model.item_factors.copy())
    )
    ours = ndcg(fit(split), split)
    assert ours >= 0.95 * ndcg(theirs, split)


def test_same_start_same_factors_as_implicit(split: fz.Split) -> None:
    """From the same starting factors, implicit's CG ALS and ours agree to rounding."""
    model, matrix = implicit_model(split, 8, 2.0, 0.05, 2)
    g = torch.Generator().manual_seed(5)  # fit_als's documented start: uniform [0, 0.01)
    model.user_factors = (torch.rand(N_USERS, 8, generator=g) * 0.01).numpy()
    model.item_factors = (torch.rand(N_ITEMS, 8, generator=g) * 0.01).numpy()
    model.fit(matrix, show_progress=False)
    ours = fit(split, factors=8, iterations=2, seed=5)
    for mine, theirs in (
        (ours.user_factors, model.user_factors),
        (ours.item_factors, model.item_factors),
    ):
        theirs = torch.from_numpy(theirs)
        # float32 rounding differs (OpenBLAS vs MKL sparse): compare relative to the norm.
        assert (mine - theirs).norm() <= 1e-3 * theirs.norm()


@pytest.mark.gpu
def test_cuda_matches_cpu(split: fz.Split) -> None:
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    cpu = fit(split, iterations=5)
    cuda = fit(split, iterations=5, device="cuda")
    assert cuda.user_factors.device.type == "cuda"
    assert torch.allclose(cuda.user_factors.cpu(), cpu.user_factors, atol=1e-3)
    ranked = fz.recommend(cuda, split.test_users, 10, (split.train_users, split.train_items))
    assert ranked.device.type == "cuda"
    assert fz.ndcg_at_k(ranked, split.test_items) == pytest.approx(ndcg(cpu, split), abs=0.02)


def test_cache_blocking_does_not_change_the_result(split: fz.Split, monkeypatch) -> None:
    """Large factor matrices are processed in cache-sized ranges; the answer is the same."""
    whole = fit(split, iterations=3)
    monkeypatch.setattr(fz, "_BLOCK_BYTES", 1024)
    assert fz._minor_blocks(N_ITEMS, N_USERS, 16, torch.device("cpu")) > 1
    blocked = fit(split, iterations=3)
    # Only the order of float32 additions differs.
    for mine, theirs in (
        (blocked.user_factors, whole.user_factors),
        (blocked.item_factors, whole.item_factors),
    ):
        assert (mine - theirs).norm() <= 1e-4 * theirs.norm()
    assert blocked.config["loss"] == pytest.approx(whole.config["loss"], rel=1e-4)


@pytest.mark.parametrize("block_bytes", [None, 1024])
def test_threading_does_not_change_the_result(
    split: fz.Split, monkeypatch, block_bytes: int | None
) -> None:
    """In the calling thread (one torch thread), on one worker thread (small fits) or on
    several (large fits, rows in chunks): the same answer, and the caller's torch thread
    setting survives."""
    if block_bytes:
        monkeypatch.setattr(fz, "_BLOCK_BYTES", block_bytes)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        inline = fit(split, iterations=3)
        torch.set_num_threads(2)
        one_worker = fit(split, iterations=3)
        assert torch.get_num_threads() == 2
        monkeypatch.setattr(fz, "_WORKERS_FROM", 0)
        workers = fit(split, iterations=3)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(threads)
    for f in (one_worker, workers):
        for mine, theirs in (
            (f.user_factors, inline.user_factors),
            (f.item_factors, inline.item_factors),
        ):
            assert (mine - theirs).norm() <= 1e-4 * theirs.norm()
        assert f.config["loss"] == pytest.approx(inline.config["loss"], rel=1e-4)
