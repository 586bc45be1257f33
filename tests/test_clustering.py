"""k-means, choose_k and match_centroids (aigc_django.profiles.clustering): no database."""

from __future__ import annotations

import pytest
import torch

from aigc_django.profiles.clustering import assign, choose_k, kmeans, match_centroids


@pytest.fixture(autouse=True)
def _one_thread():
    """These problems are small: one thread is about as fast, and torch's OpenMP threads
    stall badly when other processes hold a core of a small machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def blobs(
    n: int, centres: torch.Tensor, spread: float, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` rows around ``centres`` (Gaussian, ``spread`` per feature) and their true blob."""
    gen = torch.Generator().manual_seed(seed)
    truth = torch.randint(len(centres), (n,), generator=gen)
    x = centres[truth] + spread * torch.randn(n, centres.shape[1], generator=gen)
    return x, truth


def spaced_centres(k: int, d: int, distance: float, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return distance * torch.randn(k, d, generator=gen)


def adjusted_rand_index(a: torch.Tensor, b: torch.Tensor) -> float:
    """Hubert and Arabie's adjusted Rand index of two labellings (1 = the same partition)."""
    a = torch.unique(a, return_inverse=True)[1]
    b = torch.unique(b, return_inverse=True)[1]
    table = torch.zeros(int(a.max()) + 1, int(b.max()) + 1, dtype=torch.float64)
    table.index_put_((a, b), torch.ones(len(a), dtype=torch.float64), accumulate=True)

    def pairs(counts: torch.Tensor) -> float:
        return float((counts * (counts - 1) / 2).sum())

    index = pairs(table)
    rows, cols = pairs(table.sum(1)), pairs(table.sum(0))
    expected = rows * cols / (len(a) * (len(a) - 1) / 2)
    best = (rows + cols) / 2
    return 1.0 if best == expected else (index - expected) / (best - expected)


def inertia_of(x: torch.Tensor, centroids: torch.Tensor, labels: torch.Tensor) -> float:
    return float((x.double() - centroids.double()[labels]).square().sum())


# kmeans ---------------------------------------------------------------------------------


def test_recovers_well_separated_blobs():
    centres = spaced_centres(6, 8, distance=10.0)
    x, truth = blobs(3000, centres, spread=1.0)
    result = kmeans(x, 6, seed=0)
    assert adjusted_rand_index(result.labels, truth) > 0.99
    assert result.converged
    assert result.centroids.shape == (6, 8)
    assert result.centroids.dtype == torch.float32
    assert result.labels.dtype == torch.int64
    # Every true centre has a learnt centroid next to it.
    gaps = torch.cdist(centres, result.centroids).min(1).values
    assert float(gaps.max()) < 0.3


def test_labels_are_nearest_and_inertia_is_their_squared_distance():
    x, _ = blobs(5000, spaced_centres(12, 6, distance=1.5), spread=1.0)
    result = kmeans(x, 12, seed=3)
    labels, dist = assign(x, result.centroids)
    assert torch.equal(labels, result.labels)
    assert result.inertia == pytest.approx(inertia_of(x, result.centroids, result.labels), rel=1e-5)
    assert float(dist.double().sum()) == pytest.approx(result.inertia, rel=1e-4)


def test_settled_labels_make_a_fixed_point():
    x, _ = blobs(3000, spaced_centres(5, 4, distance=2.0), spread=1.0)
    result = kmeans(x, 5, tol=0.0, max_iter=300, seed=1)
    assert result.converged
    means = torch.stack([x[result.labels == j].mean(0) for j in range(5)])
    torch.testing.assert_close(result.centroids, means, rtol=0, atol=1e-4)


def sklearn_kmeans(x: torch.Tensor, k: int, **options):
    """scikit-learn's KMeans fitted on ``x``, on one thread (its OpenMP threads spin against
    torch's on a small machine)."""
    sklearn_cluster = pytest.importorskip("sklearn.cluster")
    threadpoolctl = pytest.importorskip("threadpoolctl")
    with threadpoolctl.threadpool_limits(1):
        return sklearn_cluster.KMeans(k, n_init=1, max_iter=100, tol=1e-4, **options).fit(x.numpy())


def test_inertia_within_one_percent_of_sklearn():
    x, _ = blobs(20_000, spaced_centres(30, 10, distance=1.0, seed=4), spread=1.0, seed=4)
    ours = [kmeans(x, 8, seed=s).inertia for s in range(3)]
    theirs = [sklearn_kmeans(x, 8, random_state=s).inertia_ for s in range(3)]
    assert sum(ours) / sum(theirs) == pytest.approx(1.0, abs=0.01)


def test_same_start_as_sklearn_gives_the_same_clustering():
    x, _ = blobs(20_000, spaced_centres(30, 10, distance=1.0, seed=5), spread=1.0, seed=5)
    start = x[torch.randperm(len(x), generator=torch.Generator().manual_seed(0))[:8]]
    ours = kmeans(x, 8, init=start)
    theirs = sklearn_kmeans(x, 8, init=start.numpy())
    assert ours.inertia == pytest.approx(theirs.inertia_, rel=1e-4)
    assert abs(ours.iterations - theirs.n_iter_) <= 2
    assert adjusted_rand_index(ours.labels, torch.from_numpy(theirs.labels_)) > 0.99


def test_same_seed_same_result_and_seeds_differ():
    x, _ = blobs(4000, spaced_centres(20, 5, distance=1.0), spread=1.0)
    a, b = kmeans(x, 10, seed=7), kmeans(x, 10, seed=7)
    assert torch.equal(a.centroids, b.centroids)
    assert torch.equal(a.labels, b.labels)
    assert a.inertia == b.inertia and a.iterations == b.iterations
    assert not torch.equal(kmeans(x, 10, seed=8).centroids, a.centroids)


def test_large_input_is_seeded_on_a_sample_and_still_recovers_blobs():
    # Over 200,000 rows: seeds come from (and are refined on) a random sample.
    centres = spaced_centres(4, 3, distance=8.0)
    x, truth = blobs(210_000, centres, spread=1.0)
    result = kmeans(x, 4, seed=0)
    assert adjusted_rand_index(result.labels, truth) > 0.99
    assert result.converged


def test_max_iter_stops_early_and_says_so():
    x, _ = blobs(3000, spaced_centres(20, 5, distance=1.0), spread=1.0)
    result = kmeans(x, 10, max_iter=2, tol=0.0)
    assert result.iterations == 2
    assert not result.converged
    assert torch.equal(assign(x, result.centroids)[0], result.labels)


def test_empty_cluster_takes_the_farthest_row():
    x, _ = blobs(600, torch.tensor([[0.0, 0.0], [10.0, 0.0]]), spread=0.5)
    x = torch.cat([x, torch.tensor([[5.0, 30.0]])])  # an outlier, the farthest row
    start = torch.tensor([[0.0, 0.0], [10.0, 0.0], [1000.0, 1000.0]])  # third one gets nobody
    result = kmeans(x, 3, init=start)
    counts = torch.bincount(result.labels, minlength=3)
    assert bool((counts > 0).all())
    assert int(result.labels[-1]) == 2
    torch.testing.assert_close(result.centroids[2], torch.tensor([5.0, 30.0]))


def test_data_far_from_the_origin_keeps_its_precision():
    centres = spaced_centres(5, 6, distance=4.0) + 1e4
    x, truth = blobs(3000, centres, spread=0.5)
    result = kmeans(x, 5, seed=0)
    assert adjusted_rand_index(result.labels, truth) > 0.99
    assert float((result.centroids.mean() - 1e4).abs()) < 5
    assert result.inertia == pytest.approx(inertia_of(x, result.centroids, result.labels), rel=1e-3)


def test_edge_values_of_k_and_input_types():
    x, _ = blobs(50, spaced_centres(3, 2, distance=5.0), spread=1.0)
    one = kmeans(x, 1)
    torch.testing.assert_close(one.centroids[0], x.mean(0), rtol=0, atol=1e-5)
    every = kmeans(x, 50)
    assert every.inertia == pytest.approx(0.0, abs=1e-6)
    assert sorted(every.labels.tolist()) == list(range(50))
    doubles = kmeans(x.double(), 3, seed=2)
    assert doubles.centroids.dtype == torch.float32
    assert kmeans((x * 10).long(), 3).labels.shape == (50,)


def test_minibatch_is_close_to_full():
    x, _ = blobs(40_000, spaced_centres(8, 6, distance=3.0), spread=1.0)
    full = kmeans(x, 8, seed=0)
    mini = kmeans(x, 8, seed=0, batch_size=1024)
    assert mini.inertia <= 1.02 * full.inertia
    assert adjusted_rand_index(mini.labels, full.labels) > 0.9
    assert torch.equal(assign(x, mini.centroids)[0], mini.labels)
    assert mini.iterations < 100 * 40_000 // 1024  # stopped early
    assert mini.converged
    again = kmeans(x, 8, seed=0, batch_size=1024)
    assert torch.equal(again.centroids, mini.centroids)


# assign ---------------------------------------------------------------------------------


def test_assign_in_small_chunks_matches_one_block():
    x, _ = blobs(1000, spaced_centres(7, 4, distance=2.0), spread=1.0)
    centroids = x[:7].clone()
    labels, dist = assign(x, centroids)
    labels_small, dist_small = assign(x, centroids, chunk=7)
    assert torch.equal(labels, labels_small)
    torch.testing.assert_close(dist, dist_small)
    exact = torch.cdist(x.double(), centroids.double()).square()
    assert torch.equal(labels, exact.argmin(1))
    torch.testing.assert_close(dist.double(), exact.min(1).values, rtol=1e-4, atol=1e-4)


# choose_k -------------------------------------------------------------------------------


def test_choose_k_finds_the_number_of_blobs():
    x, _ = blobs(2000, spaced_centres(4, 5, distance=6.0), spread=1.0)
    assert choose_k(x, 2, 8, seed=0) == 4


def test_choose_k_samples_large_inputs():
    centres = torch.tensor([[0.0, 0.0, 0.0], [12.0, 0.0, 0.0], [0.0, 12.0, 0.0]])
    x, _ = blobs(12_000, centres, spread=1.0, seed=1)
    assert choose_k(x, 2, 6, sample_size=1500) == 3


# match_centroids ------------------------------------------------------------------------


def test_match_centroids_undoes_a_shuffle():
    gen = torch.Generator().manual_seed(0)
    old = torch.randn(40, 6, generator=gen) * 5
    order = torch.randperm(40, generator=gen)
    new = old[order] + 0.05 * torch.randn(40, 6, generator=gen)
    assert match_centroids(old, new) == order.tolist()


def test_match_centroids_minimises_the_total_not_each_pair():
    old = torch.tensor([[0.0], [2.0]])
    new = torch.tensor([[1.1], [3.0]])  # greedy would give new 0 the old 1
    assert match_centroids(old, new) == [0, 1]


def test_match_centroids_leaves_extra_and_far_centroids_unmatched():
    old = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    new = torch.tensor([[0.2, 0.0], [50.0, 50.0], [10.0, 0.3], [0.0, 9.9], [9.0, 9.0]])
    assert match_centroids(old, new) == [0, None, 1, 2, None]
    # Beyond max_distance: no match, and the far one does not take a near one's partner.
    assert match_centroids(old, new[:3], max_distance=1.0) == [0, None, 1]
    assert match_centroids(old[:1], torch.tensor([[30.0, 0.0]]), max_distance=1.0) == [None]


def test_match_centroids_with_fewer_new_or_none_old():
    old = torch.tensor([[0.0], [5.0], [9.0]])
    assert match_centroids(old, torch.tensor([[8.8], [0.1]])) == [2, 0]
    assert match_centroids(torch.zeros(0, 1), torch.tensor([[1.0]])) == [None]
    assert match_centroids(old, torch.zeros(0, 1)) == []


def test_match_centroids_finds_the_optimum_for_two_hundred():
    gen = torch.Generator().manual_seed(3)
    old = torch.randn(200, 8, generator=gen)
    new = torch.randn(200, 8, generator=gen)
    matched = torch.tensor(match_centroids(old, new))
    assert sorted(matched.tolist()) == list(range(200))
    cost = torch.cdist(new.double(), old.double()).square()
    here = cost[torch.arange(200), matched]
    # No swap of two partners lowers the total.
    crossed = cost[:, matched]  # [i, j]: row i paired with row j's partner
    gain = here[:, None] + here[None, :] - crossed - crossed.T
    assert float(gain.max()) <= 1e-9
    optimize = pytest.importorskip("scipy.optimize")
    rows, cols = optimize.linear_sum_assignment(cost.numpy())
    assert float(here.sum()) == pytest.approx(float(cost[rows, cols].sum()), rel=1e-12)


# Bad input ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("x", "k", "options", "message"),
    [
        (torch.randn(10, 2), 0, {}, "k must be at least 1"),
        (torch.randn(10, 2), 11, {}, "more than the 10 rows"),
        (torch.randn(10, 2), 2.0, {}, "k must be an int"),
        (torch.randn(10), 2, {}, "2-D"),
        (torch.randn(4, 5, 2), 2, {}, "2-D"),
        (torch.zeros(0, 3), 1, {}, "empty"),
        (torch.zeros(5, 0), 1, {}, "empty"),
        (torch.tensor([[1.0, float("nan")], [0.0, 1.0]]), 1, {}, "NaN or infinite"),
        (torch.tensor([[1.0, float("inf")], [0.0, 1.0]]), 1, {}, "NaN or infinite"),
        ([[1.0, 2.0]], 1, {}, "torch.Tensor"),
        (torch.randn(10, 2), 2, {"max_iter": 0}, "max_iter"),
        (torch.randn(10, 2), 2, {"tol": -1.0}, "tol"),
        (torch.randn(10, 2), 2, {"batch_size": 0}, "batch_size"),
        (torch.randn(10, 2), 2, {"init": torch.randn(3, 2)}, r"init must have shape \(2, 2\)"),
        (torch.randn(10, 2), 2, {"init": torch.full((2, 2), float("nan"))}, "init holds NaN"),
    ],
)
def test_kmeans_rejects_bad_input(x, k, options, message):
    with pytest.raises(ValueError, match=message):
        kmeans(x, k, **options)


def test_other_functions_reject_bad_input():
    x = torch.randn(30, 3)
    with pytest.raises(ValueError, match="features"):
        assign(x, torch.randn(2, 4))
    with pytest.raises(ValueError, match="NaN or infinite"):
        assign(torch.tensor([[float("nan"), 0.0, 0.0]]), torch.randn(2, 3))
    with pytest.raises(ValueError, match="k_min must be at least 2"):
        choose_k(x, 1, 3)
    with pytest.raises(ValueError, match="k_max must be at least 4"):
        choose_k(x, 4, 3)
    with pytest.raises(ValueError, match="needs at least 31 rows"):
        choose_k(x, 2, 30)
    with pytest.raises(ValueError, match="features"):
        match_centroids(torch.randn(2, 3), torch.randn(2, 4))
    with pytest.raises(ValueError, match="max_distance"):
        match_centroids(torch.randn(2, 3), torch.randn(2, 3), max_distance=-1.0)


@pytest.mark.gpu
def test_runs_on_cuda_like_on_cpu():
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    centres = spaced_centres(6, 8, distance=10.0)
    x, truth = blobs(20_000, centres, spread=1.0)
    gpu = kmeans(x.cuda(), 6, seed=0)
    assert gpu.centroids.device.type == "cuda" and gpu.labels.device.type == "cuda"
    assert adjusted_rand_index(gpu.labels.cpu(), truth) > 0.99
    cpu = kmeans(x, 6, seed=0)
    assert gpu.inertia == pytest.approx(cpu.inertia, rel=1e-4)
    mini = kmeans(x.cuda(), 6, seed=0, batch_size=2048)
    assert mini.labels.device.type == "cuda"
    labels, _ = assign(x.cuda(), gpu.centroids)
    assert torch.equal(labels, gpu.labels)
    assert choose_k(x.cuda()[:3000], 2, 8) == 6
