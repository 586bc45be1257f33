"""k-means in torch: the learned segments of visitor profiles.

``kmeans()`` groups rows (profile vectors) into ``k`` clusters, ``assign()`` puts new rows in
the nearest cluster, ``choose_k()`` picks ``k`` by silhouette score and ``match_centroids()``
tells which cluster of the last build each new cluster continues, so that a segment keeps its
identity across rebuilds.

Everything runs in float32 on the device of the input (a CUDA tensor is clustered on its
GPU; nothing here moves data to another device, except ``match_centroids()``, which works on
the CPU) under ``torch.no_grad()``. Random draws come from a CPU ``torch.Generator`` seeded
with ``seed``, so a seed makes the same draws on every device; on the CPU, with the same number
of threads, the same seed gives the same result bit for bit; on CUDA atomic additions can
change the last bits.

The algorithm follows scikit-learn's ``KMeans`` (greedy k-means++ seeding, Lloyd iterations,
the same stopping rule, empty clusters moved to the farthest rows) and ``MiniBatchKMeans``,
so their results can be compared. Lloyd iterations keep Hamerly's bound for each row and
only compare a row with every centroid when the bound says its cluster may have changed:
the same labels as plain Lloyd at a fraction of the work once few rows move. Large inputs
are seeded on samples (see ``kmeans()``).

On the CPU, torch's OpenMP threads spin while they wait; on a machine whose cores other
busy processes share, a fit can then run many times slower than on one thread. Set
``OMP_WAIT_POLICY=PASSIVE`` in the environment, or ``torch.set_num_threads(1)``, there.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

__all__ = ["KMeansResult", "assign", "choose_k", "kmeans", "match_centroids"]

# Rows per block are chosen so a block of distances takes about this much memory.
_CPU_BLOCK_BYTES = 2 << 20
_CUDA_BLOCK_BYTES = 256 << 20
# Inputs with over twice max(this, 500 * k) rows are seeded on a random sample that size.
_SEED_SAMPLE_MIN = 50_000
_SEED_SAMPLE_PER_CLUSTER = 500
# Mini-batch mode: stop after this many steps without a better smoothed inertia (sklearn's
# max_no_improvement) and move clusters lighter than this share of the heaviest one.
_MAX_NO_IMPROVEMENT = 10
_REASSIGNMENT_RATIO = 0.01
# When more than this share of rows may have changed cluster, a dense pass is cheaper.
_DENSE_SHARE = 0.6


@dataclass
class KMeansResult:
    """The outcome of ``kmeans()``.

    ``centroids`` is ``(k, d)`` float32 and ``labels`` ``(n,)`` int64, both on the input's
    device; ``labels[i]`` is the nearest centroid of row ``i``. ``inertia`` is the sum of
    squared distances of the rows to their centroid. ``iterations`` counts Lloyd iterations
    over all rows (mini-batch steps in mini-batch mode); ``converged`` is False when
    ``max_iter`` ran out before the stopping rule was met.
    """

    centroids: torch.Tensor
    labels: torch.Tensor
    inertia: float
    iterations: int
    converged: bool


@torch.no_grad()
def kmeans(
    x: torch.Tensor,
    k: int,
    *,
    max_iter: int = 100,
    tol: float = 1e-4,
    seed: int = 0,
    batch_size: int | None = None,
    init: torch.Tensor | None = None,
) -> KMeansResult:
    """Cluster the rows of ``x`` (``(n, d)``, any real dtype, computed in float32) into ``k``.

    Seeding is greedy k-means++ as in scikit-learn (``2 + log(k)`` candidates per centroid,
    the best kept); ``init`` (``(k, d)``) replaces it. When ``x`` has more than twice
    ``m = max(50_000, 500 * k)`` rows, k-means++ runs on a random sample of ``m`` rows, and
    the seeds are refined by Lloyd on that sample, then on samples three times as large while
    those stay under half of ``x``: most rows change cluster in the first iterations, and
    doing those on samples saves most of the time. The Lloyd iterations over all of ``x``
    then stop, as in scikit-learn, when no label changes or when the squared centroid shift
    summed over clusters is at most ``tol`` times the mean per-feature variance of ``x``
    (``tol=0`` waits for labels to settle). ``iterations`` counts only those passes over all
    rows; ``max_iter`` also caps each refinement. A cluster left empty takes the row
    farthest from its centroid.

    With ``batch_size``, the centroids are learnt from random mini-batches instead
    (scikit-learn's ``MiniBatchKMeans``, seeded by k-means++ on the sample above): at most
    ``max_iter * n // batch_size`` steps (so ``max_iter`` counts passes over the data),
    stopping early when the smoothed batch inertia has not improved for 10 steps or the
    centroids move less than the tolerance; then one full pass gives the labels and the
    inertia. Use it when ``x`` is too large for repeated passes; its inertia is typically a
    percent or two above the full algorithm's.

    Memory beyond ``x``: a few floats per row, blocks of distances of about 2 MiB (256 MiB
    on CUDA), and copies of the refinement samples (at most half of ``x``). ``x`` itself is
    copied when it is not contiguous float32, or when its mean is far from the origin
    compared with its spread (centring keeps float32 distances exact enough). Raises
    ``ValueError`` for a ``k`` outside ``1..n``, an empty, non-2D or non-finite ``x``, or a
    bad option.
    """
    x = _check_data(x, "x", finite=False)  # _prepare checks
    n, d = x.shape
    _check_int(k, "k", low=1)
    if k > n:
        raise ValueError(f"k={k} is more than the {n} rows of x.")
    _check_int(max_iter, "max_iter", low=1)
    if not (isinstance(tol, int | float) and math.isfinite(tol) and tol >= 0):
        raise ValueError(f"tol must be a finite number >= 0, not {tol!r}.")
    if batch_size is not None:
        _check_int(batch_size, "batch_size", low=1)
    if init is not None:
        init = _check_data(init, "init").to(x.device)
        if init.shape != (k, d):
            raise ValueError(f"init must have shape ({k}, {d}), not {tuple(init.shape)}.")

    gen = torch.Generator().manual_seed(seed)
    x, xn, offset, mean_var = _prepare(x)
    tol_abs = tol * mean_var
    rows = _block_rows(x.device, k)

    if init is not None:
        centroids = init - offset
    else:
        centroids = _seed(x, xn, k, gen, refine=batch_size is None, max_iter=max_iter, tol=tol_abs)

    if batch_size is not None:
        centroids, labels, inertia, steps, converged = _minibatch(
            x, xn, centroids, batch_size, max_iter, tol_abs, gen, rows
        )
    else:
        centroids, labels, inertia, steps, converged = _lloyd(
            x, xn, centroids, max_iter, tol_abs, rows
        )
    return KMeansResult(
        centroids=(centroids + offset).contiguous(),
        labels=labels,
        inertia=inertia,
        iterations=steps,
        converged=converged,
    )


@torch.no_grad()
def assign(
    x: torch.Tensor, centroids: torch.Tensor, chunk: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """The nearest centroid of each row of ``x`` and the squared distance to it.

    Returns ``(labels, distances)``: ``(n,)`` int64 and ``(n,)`` float32 on ``x``'s device
    (``centroids`` is moved there). ``chunk`` rows are compared at a time, which bounds the
    extra memory to ``chunk * k`` floats; by default blocks take about 2 MiB (256 MiB on
    CUDA). Distances come from ``|x|^2 - 2 x.c + |c|^2`` in float32, so a row on top of its
    centroid can read a tiny positive number instead of 0.
    """
    x = _check_data(x, "x", finite=False)  # checked from the row norms below
    centroids = _check_data(centroids, "centroids").to(x.device)
    if centroids.shape[1] != x.shape[1]:
        raise ValueError(f"centroids have {centroids.shape[1]} features but x has {x.shape[1]}.")
    if chunk is None:
        chunk = _block_rows(x.device, centroids.shape[0])
    _check_int(chunk, "chunk", low=1)
    xn = _row_norms(x, chunk)
    if not math.isfinite(float(xn.sum(dtype=torch.float64))):
        raise ValueError("x holds NaN or infinite values (or values too large to square).")
    labels, dist = _nearest(x, xn, centroids, chunk)
    return labels, dist


@torch.no_grad()
def choose_k(
    x: torch.Tensor,
    k_min: int,
    k_max: int,
    *,
    seed: int = 0,
    sample_size: int = 4000,
    tolerance: float = 0.03,
) -> int:
    """The smallest ``k`` in ``k_min..k_max`` whose silhouette score is within ``tolerance``
    of the best.

    A random sample of ``sample_size`` rows (all rows when there are fewer) is clustered with
    ``kmeans(sample, k, seed=seed)`` for each ``k``; each clustering is scored by its mean
    silhouette (Euclidean distances, 0 for rows alone in their cluster, as scikit-learn's
    ``silhouette_score``). Real groups often hold sub-groups whose split scores a hair better
    than the groups themselves; ``tolerance`` prefers the fewer, broader segments then
    (``tolerance=0`` picks the best score, the smallest ``k`` on a tie). The silhouette
    needs ``2 <= k_min <= k_max <= sample rows - 1``. Cost grows with ``sample_size ** 2``;
    with the 4000-row default, eleven values of ``k`` take about half a second on one core.
    """
    x = _check_data(x, "x")
    _check_int(k_min, "k_min", low=2)
    _check_int(k_max, "k_max", low=k_min)
    _check_int(sample_size, "sample_size", low=3)
    n = x.shape[0]
    m = min(n, sample_size)
    if k_max > m - 1:
        raise ValueError(
            f"k_max={k_max} needs at least {k_max + 1} rows in the sample, which has {m}."
        )
    gen = torch.Generator().manual_seed(seed)
    sample = x[torch.randperm(n, generator=gen)[:m].to(x.device)] if m < n else x
    sample = sample - sample.mean(0, keepdim=True)
    ks = list(range(k_min, k_max + 1))
    labels = [kmeans(sample, k, seed=seed).labels for k in ks]
    scores = _silhouettes(sample, labels, ks)
    good_enough = max(scores) - tolerance
    return next(k for k, score in zip(ks, scores, strict=True) if score >= good_enough)


@torch.no_grad()
def match_centroids(
    old: torch.Tensor, new: torch.Tensor, max_distance: float | None = None
) -> list[int | None]:
    """For each row of ``new``, the index of the row of ``old`` it continues, or None.

    Pairs are chosen by the Hungarian method to minimise the total squared distance; each old
    centroid continues at most one new one. A new centroid gets None when there are more new
    than old centroids and it is left over, or when the distance to its match is more than
    ``max_distance`` (Euclidean, in the centroids' units); a pair beyond ``max_distance``
    costs as much as leaving both unmatched, so a far centroid never takes a near one's match.
    Runs on the CPU in float64; meant for up to a few hundred centroids (O(k^3)).
    """
    old = _check_data(old, "old", allow_empty=True).to("cpu", torch.float64)
    new = _check_data(new, "new", allow_empty=True).to("cpu", torch.float64)
    if old.shape[1] != new.shape[1]:
        raise ValueError(f"old has {old.shape[1]} features but new has {new.shape[1]}.")
    if max_distance is not None and not (
        isinstance(max_distance, int | float) and max_distance >= 0
    ):
        raise ValueError(f"max_distance must be a number >= 0 or None, not {max_distance!r}.")
    if len(new) == 0:
        return []
    if len(old) == 0:
        return [None] * len(new)
    cost = (new[:, None, :] - old[None, :, :]).square().sum(-1)
    limit = math.inf if max_distance is None else float(max_distance) ** 2
    capped = cost.clamp(max=limit) if max_distance is not None else cost
    if len(new) <= len(old):
        pairs = list(enumerate(_hungarian(capped)))
    else:
        pairs = [(i, j) for j, i in enumerate(_hungarian(capped.T))]
    result: list[int | None] = [None] * len(new)
    for i, j in pairs:
        if cost[i, j] <= limit:
            result[i] = j
    return result


# Input checks ---------------------------------------------------------------------------


def _check_int(value: object, name: str, *, low: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(f"{name} must be an int, not {value!r}.")
    if value < low:
        raise ValueError(f"{name} must be at least {low}, not {value}.")


def _check_data(
    x: object, name: str, *, allow_empty: bool = False, finite: bool = True
) -> torch.Tensor:
    """``x`` as a contiguous float32 tensor, after checking its shape and (with ``finite``)
    its values; callers that pass ``finite=False`` check them from sums they make anyway."""
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, not {type(x).__name__}.")
    if x.ndim != 2:
        raise ValueError(f"{name} must be 2-D (rows, features), not {x.ndim}-D.")
    if x.shape[1] == 0 or (x.shape[0] == 0 and not allow_empty):
        raise ValueError(f"{name} is empty: shape {tuple(x.shape)}.")
    if x.is_complex() or x.dtype == torch.bool:
        raise ValueError(f"{name} must hold real numbers, not {x.dtype}.")
    x = x.detach().to(torch.float32).contiguous()
    if finite and not bool(torch.isfinite(x).all()):
        raise ValueError(f"{name} holds NaN or infinite values.")
    return x


# Building blocks ------------------------------------------------------------------------


def _block_rows(device: torch.device, k: int) -> int:
    budget = _CUDA_BLOCK_BYTES if device.type == "cuda" else _CPU_BLOCK_BYTES
    return max(1024, budget // (4 * max(k, 1)))


def _row_norms(x: torch.Tensor, rows: int) -> torch.Tensor:
    """Squared norm of each row, in float32, without an ``(n, d)`` temporary."""
    out = torch.empty(x.shape[0], dtype=torch.float32, device=x.device)
    for start in range(0, x.shape[0], rows):
        block = x[start : start + rows]
        torch.linalg.vecdot(block, block, out=out[start : start + rows])
    return out


def _prepare(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, float]:
    """``(x, row norms, offset, mean variance)``, with ``x`` centred when far from 0.

    Also checks that ``x`` is finite, from sums it needs anyway. sklearn centres every input;
    here a copy is only made when the mean dominates the spread, which is when float32
    distances through ``|x|^2 - 2 x.c + |c|^2`` lose their precision.
    """
    _n, d = x.shape
    xn, mean, mean_sq = _moments(x)
    if not (math.isfinite(mean_sq) and bool(torch.isfinite(mean).all())):
        raise ValueError("x holds NaN or infinite values (or values too large to square).")
    offset = torch.zeros(d, dtype=torch.float32, device=x.device)
    if float(mean.square().sum()) > 0.5 * mean_sq:
        offset = mean.to(torch.float32)
        x = x - offset
        xn, mean, mean_sq = _moments(x)
    return x, xn, offset, max(mean_sq - float(mean.square().sum()), 0.0) / d


def _moments(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Row norms, the mean row (float64) and the mean squared norm, in one pass."""
    n, d = x.shape
    rows = _block_rows(x.device, 64)
    xn = torch.empty(n, dtype=torch.float32, device=x.device)
    total = torch.zeros(d, dtype=torch.float64, device=x.device)
    ones = torch.ones(min(rows, n), dtype=torch.float32, device=x.device)
    for start in range(0, n, rows):
        block = x[start : start + rows]
        torch.linalg.vecdot(block, block, out=xn[start : start + rows])
        # A matrix-vector product sums columns far faster than sum(0) on a tall block.
        total += torch.mv(block.T, ones[: len(block)])
    return xn, total / n, float(xn.sum(dtype=torch.float64)) / n


class _Table:
    """Centroids with what every block needs: their norms and a column of their indices."""

    def __init__(self, centroids: torch.Tensor) -> None:
        self.centroids = centroids
        self.k = centroids.shape[0]
        self.norms = torch.linalg.vecdot(centroids, centroids)[:, None]
        self.index = torch.arange(self.k, dtype=torch.int32, device=centroids.device)[:, None]

    def scores(self, block: torch.Tensor) -> torch.Tensor:
        """``(k, rows)``: squared distances less ``|x|^2``.

        Centroids run down the first axis because torch reduces over it with vector
        instructions, several times faster than across the short last axis.
        """
        return torch.addmm(self.norms, self.centroids, block.T, alpha=-2.0)

    def nearest(self, scores: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Smallest score of each column and its row (the highest row on a tie)."""
        best = scores.amin(0)
        # argmin over the first axis is a slow path in torch; amin, == and amax are not.
        label = torch.where(scores == best, self.index, -1).amax(0)
        return best, label.long()


def _nearest(
    x: torch.Tensor, xn: torch.Tensor, centroids: torch.Tensor, rows: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Labels and squared distances to the nearest centroid, block by block."""
    n = x.shape[0]
    table = _Table(centroids)
    labels = torch.empty(n, dtype=torch.int64, device=x.device)
    dist = torch.empty(n, dtype=torch.float32, device=x.device)
    for start in range(0, n, rows):
        stop = min(start + rows, n)
        value, labels[start:stop] = table.nearest(table.scores(x[start:stop]))
        torch.add(value, xn[start:stop], out=dist[start:stop]).clamp_(min=0)
    return labels, dist


def _seed(
    x: torch.Tensor,
    xn: torch.Tensor,
    k: int,
    gen: torch.Generator,
    *,
    refine: bool,
    max_iter: int,
    tol: float,
) -> torch.Tensor:
    """Starting centroids: k-means++, on a random sample when ``x`` is large.

    With ``refine``, the seeds then go through Lloyd on the sample, and again on samples three
    times as large while those stay under half of ``x``: the early iterations move most rows,
    and doing them on a fraction of the data saves most of the time. What follows on all rows
    is still plain Lloyd under the same stopping rule, so the result is a fixed point of
    ``x`` itself.
    """
    n = x.shape[0]
    size = max(_SEED_SAMPLE_MIN, _SEED_SAMPLE_PER_CLUSTER * k)
    if n <= 2 * size:
        return _kmeans_plusplus(x, xn, k, gen)
    order = torch.randperm(n, generator=gen).to(x.device)
    sample = order[:size]
    centroids = _kmeans_plusplus(x.index_select(0, sample), xn.index_select(0, sample), k, gen)
    rows = _block_rows(x.device, k)
    while refine and 2 * size <= n:
        sample = order[:size]
        points, norms = x.index_select(0, sample), xn.index_select(0, sample)
        centroids = _lloyd(points, norms, centroids, max_iter, tol, rows)[0]
        size *= 3
    return centroids


def _kmeans_plusplus(
    x: torch.Tensor, xn: torch.Tensor, k: int, gen: torch.Generator
) -> torch.Tensor:
    """Greedy k-means++ seeds, as sklearn's ``_kmeans_plusplus``."""
    n, d = x.shape
    trials = 2 + int(math.log(k))
    centroids = torch.empty(k, d, dtype=torch.float32, device=x.device)
    first = int(torch.randint(n, (1,), generator=gen))
    centroids[0] = x[first]
    closest = _Table(centroids[:1]).scores(x)[0].add_(xn).clamp_(min=0)
    potential = closest.sum(dtype=torch.float64)
    for c in range(1, k):
        draws = torch.rand(trials, generator=gen, dtype=torch.float64).to(x.device) * potential
        cumulative = torch.cumsum(closest, 0, dtype=torch.float64)
        ids = torch.searchsorted(cumulative, draws).clamp_(max=n - 1)
        candidates = x.index_select(0, ids)
        # (trials, n): squared distances if each candidate were added.
        dist = _Table(candidates).scores(x).add_(xn).clamp_(min=0)
        torch.minimum(dist, closest, out=dist)
        potentials = dist.sum(1, dtype=torch.float64)
        best = potentials.argmin()
        potential = potentials[best]
        closest = dist.index_select(0, best[None])[0]
        centroids[c] = candidates.index_select(0, best[None])[0]
    return centroids


# Lloyd with Hamerly's bounds -----------------------------------------------------------


def _nearest_two(
    block: torch.Tensor, block_norms: torch.Tensor, table: _Table, old: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Nearest label, distances to the nearest and the second nearest centroid, and the
    positions whose label differs from ``old`` (all of them without ``old``).

    With ``old``, the nearest is only searched for where the old centroid is no longer the
    nearest, which saves most of the work once few rows change cluster.
    """
    scores = table.scores(block)
    if old is None:
        first, label = table.nearest(scores)
        changed = torch.arange(len(label), device=label.device)
    else:
        first = scores.amin(0)
        changed = (scores.gather(0, old[None])[0] > first).nonzero()[:, 0]
        label = old
        if len(changed):
            _, found = table.nearest(scores.index_select(1, changed))
            label = old.index_copy(0, changed, found)
    if table.k > 1:
        scores.scatter_(0, label[None], math.inf)
        second = scores.amin(0)
    else:
        second = torch.full_like(first, math.inf)
    first = (first + block_norms).clamp_(min=0).sqrt_()
    second = (second + block_norms).clamp_(min=0).sqrt_()
    return label, first, second, changed


class _LloydState:
    """Labels, per-cluster sums and counts, and a Hamerly bound for each row.

    ``margin[i]`` is at most the distance from row ``i`` to its second nearest centroid less
    the distance to its own; while it is not negative the row cannot have changed cluster.
    When the centroids move, a margin shrinks by the move of the row's own centroid plus the
    largest move of any other, so only rows with a negative margin are looked at again.
    (Yinyang's per-group bounds prune more rows, but on CPU their upkeep cost more than they
    saved.) Sums are float64 and updated only for rows that change cluster: exact without a
    full pass.
    """

    def __init__(self, x: torch.Tensor, xn: torch.Tensor, centroids: torch.Tensor, rows: int):
        n, d = x.shape
        k = centroids.shape[0]
        self.x, self.xn, self.rows = x, xn, rows
        self.labels = torch.empty(n, dtype=torch.int64, device=x.device)
        self.margin = torch.empty(n, dtype=torch.float32, device=x.device)
        self.sums = torch.zeros(k, d, dtype=torch.float64, device=x.device)
        self.counts = torch.zeros(k, dtype=torch.int64, device=x.device)
        table = _Table(centroids)
        block_sums = torch.empty(k, d, dtype=torch.float32, device=x.device)
        for start in range(0, n, rows):
            stop = min(start + rows, n)
            block = x[start:stop]
            label, first, second, _ = _nearest_two(block, xn[start:stop], table)
            self.labels[start:stop] = label
            torch.sub(second, first, out=self.margin[start:stop])
            # float32 sums per block, float64 across blocks: exact enough, and cheap.
            self.sums += block_sums.zero_().index_add_(0, label, block)
        self.counts += torch.bincount(self.labels, minlength=k)

    def reassign(self, centroids: torch.Tensor) -> int:
        """Move rows to their nearest centroid; returns how many changed cluster."""
        table = _Table(centroids)
        candidates = (self.margin < 0).nonzero()[:, 0]
        count = len(candidates)
        if count == 0:
            return 0
        changed = 0
        n = self.x.shape[0]
        if count > _DENSE_SHARE * n:
            for start in range(0, n, self.rows):
                stop = min(start + self.rows, n)
                changed += self._update(table, slice(start, stop), self.x[start:stop])
        else:
            for start in range(0, count, self.rows):
                index = candidates[start : start + self.rows]
                changed += self._update(table, index, self.x.index_select(0, index))
        return changed

    def _update(self, table: _Table, where: slice | torch.Tensor, block: torch.Tensor) -> int:
        """Recompute labels and margins of the rows ``where`` (their values are ``block``)."""
        if isinstance(where, slice):
            old = self.labels[where]
            label, first, second, moved = _nearest_two(block, self.xn[where], table, old)
            torch.sub(second, first, out=self.margin[where])
        else:
            old = self.labels.index_select(0, where)
            norms = self.xn.index_select(0, where)
            label, first, second, moved = _nearest_two(block, norms, table, old)
            self.margin.index_copy_(0, where, second - first)
        if not len(moved):
            return 0
        new = label.index_select(0, moved)
        self._move(block.index_select(0, moved), old.index_select(0, moved), new)
        if isinstance(where, slice):
            self.labels[where] = label
        else:
            self.labels.index_copy_(0, where.index_select(0, moved), new)
        return len(moved)

    def _move(self, values: torch.Tensor, old: torch.Tensor, new: torch.Tensor) -> None:
        values = values.to(torch.float64)
        self.sums.index_add_(0, new, values)
        self.sums.index_add_(0, old, values, alpha=-1)
        ones = torch.ones_like(new)
        self.counts.index_add_(0, new, ones)
        self.counts.index_add_(0, old, ones, alpha=-1)

    def means(self, centroids: torch.Tensor) -> torch.Tensor:
        """New centroids; an empty cluster takes the row farthest from its centroid."""
        empty = (self.counts == 0).nonzero()[:, 0]
        if len(empty):
            self._refill(centroids, empty)
        return (self.sums / self.counts.clamp(min=1)[:, None]).to(torch.float32)

    def _refill(self, centroids: torch.Tensor, empty: torch.Tensor) -> None:
        # sklearn's _relocate_empty_clusters: distances to the centroids of this iteration.
        n = self.x.shape[0]
        dist = torch.empty(n, dtype=torch.float32, device=self.x.device)
        for start in range(0, n, self.rows):
            stop = min(start + self.rows, n)
            diff = self.x[start:stop] - centroids.index_select(0, self.labels[start:stop])
            torch.linalg.vector_norm(diff, dim=1, out=dist[start:stop])
        # A row alone in its cluster would only empty another one.
        dist[self.counts.index_select(0, self.labels) <= 1] = -1.0
        far = dist.topk(min(len(empty), n)).indices
        empty = empty[: len(far)]
        self._move(self.x.index_select(0, far), self.labels[far], empty)
        self.labels[far] = empty
        # Force a full look at these rows next time.
        self.margin[far] = -math.inf

    def shift(self, old: torch.Tensor, new: torch.Tensor) -> float:
        """Shrink the margins for centroids moving from ``old`` to ``new``; returns the
        squared shift summed over clusters (sklearn's ``center_shift_tot``)."""
        moves = torch.linalg.vector_norm(new - old, dim=1)
        if len(moves) > 1:
            top = moves.topk(2)
            others = torch.full_like(moves, float(top.values[0]))
            others[top.indices[0]] = top.values[1]
            self.margin -= (moves + others).index_select(0, self.labels)
        return float(moves.to(torch.float64).square().sum())

    def inertia(self, centroids: torch.Tensor) -> float:
        """Sum of squared distances, from the float64 sums: no pass over the rows."""
        c = centroids.to(torch.float64)
        total = self.xn.sum(dtype=torch.float64)
        total -= 2 * (c * self.sums).sum()
        total += (self.counts.to(torch.float64) * c.square().sum(1)).sum()
        return max(float(total), 0.0)


def _lloyd(
    x: torch.Tensor,
    xn: torch.Tensor,
    centroids: torch.Tensor,
    max_iter: int,
    tol_abs: float,
    rows: int,
) -> tuple[torch.Tensor, torch.Tensor, float, int, bool]:
    state = _LloydState(x, xn, centroids, rows)
    converged = settled = False
    iteration = 0
    for iteration in range(1, max_iter + 1):
        # As in sklearn, iteration i assigns labels and then moves the centroids.
        if iteration > 1 and state.reassign(centroids) == 0:
            converged = settled = True
            break
        moved = state.means(centroids)
        shift = state.shift(centroids, moved)
        centroids = moved
        if shift <= tol_abs:
            converged = True
            break
    if not settled:
        # Labels for the final centroids.
        state.reassign(centroids)
    return centroids, state.labels, state.inertia(centroids), iteration, converged


# Mini-batch ---------------------------------------------------------------------------


def _minibatch(
    x: torch.Tensor,
    xn: torch.Tensor,
    centroids: torch.Tensor,
    batch_size: int,
    max_iter: int,
    tol_abs: float,
    gen: torch.Generator,
    rows: int,
) -> tuple[torch.Tensor, torch.Tensor, float, int, bool]:
    """sklearn's ``MiniBatchKMeans.fit`` loop, with unit weights."""
    n = x.shape[0]
    k, d = centroids.shape
    device = x.device
    counts = torch.zeros(k, dtype=torch.float32, device=device)
    batch_sums = torch.empty(k, d, dtype=torch.float32, device=device)
    steps = max(1, (max_iter * n) // batch_size)
    alpha = min(1.0, batch_size * 2.0 / (n + 1))
    ewa: float | None = None
    ewa_min: float | None = None
    no_improvement = 0
    since_reassign = 0
    converged = False
    step = 0
    for step in range(1, steps + 1):
        index = torch.randint(n, (batch_size,), generator=gen).to(device)
        batch = x.index_select(0, index)
        labels, dist = _nearest(batch, xn.index_select(0, index), centroids, rows)
        batch_inertia = float(dist.sum(dtype=torch.float64)) / batch_size

        batch_counts = torch.bincount(labels, minlength=k).to(torch.float32)
        batch_sums.zero_().index_add_(0, labels, batch)
        total = counts + batch_counts
        updated = (centroids * counts[:, None] + batch_sums) / total.clamp(min=1)[:, None]
        moved = torch.where((batch_counts > 0)[:, None], updated, centroids)
        since_reassign += batch_size
        reassign = bool((counts == 0).any()) or since_reassign >= 10 * k
        counts = total
        if reassign:
            since_reassign = 0
            moved, counts = _reassign_light(moved, counts, batch, gen)
        shift = float((moved - centroids).square().sum(dtype=torch.float64))
        centroids = moved

        if step == 1:  # its inertia is the seeding's, not the updates'
            continue
        ewa = batch_inertia if ewa is None else ewa * (1 - alpha) + batch_inertia * alpha
        if tol_abs > 0 and shift <= tol_abs:
            converged = True
            break
        if ewa_min is None or ewa < ewa_min:
            no_improvement, ewa_min = 0, ewa
        else:
            no_improvement += 1
        if no_improvement >= _MAX_NO_IMPROVEMENT:
            converged = True
            break

    labels, dist = _nearest(x, xn, centroids, rows)
    return centroids, labels, float(dist.sum(dtype=torch.float64)), step, converged


def _reassign_light(
    centroids: torch.Tensor, counts: torch.Tensor, batch: torch.Tensor, gen: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Move clusters with under 1% of the heaviest one's count onto random batch rows."""
    light = counts < _REASSIGNMENT_RATIO * counts.max()
    if not bool(light.any()) or bool(light.all()):
        return centroids, counts
    limit = batch.shape[0] // 2
    if int(light.sum()) > limit:
        light = torch.zeros_like(light)
        light[counts.argsort()[:limit]] = True
    which = light.nonzero()[:, 0]
    rows = torch.randperm(batch.shape[0], generator=gen)[: len(which)].to(batch.device)
    centroids = centroids.clone()
    centroids[which] = batch[rows]
    counts = counts.clone()
    counts[which] = counts[~light].min()
    return centroids, counts


# choose_k and match_centroids ----------------------------------------------------------


def _silhouettes(x: torch.Tensor, labelings: list[torch.Tensor], ks: list[int]) -> list[float]:
    """Mean silhouette of each labelling, with one pass of pairwise distances."""
    m = x.shape[0]
    rows = _block_rows(x.device, m)
    xn = _row_norms(x, rows)
    onehots = [
        torch.nn.functional.one_hot(lab, k).to(torch.float32)
        for lab, k in zip(labelings, ks, strict=True)
    ]
    sizes = [h.sum(0) for h in onehots]
    totals = [0.0] * len(ks)
    for start in range(0, m, rows):
        stop = min(start + rows, m)
        sq = torch.addmm(xn[None, :], x[start:stop], x.T, alpha=-2.0).add_(xn[start:stop, None])
        dist = sq.clamp_(min=0).sqrt_()
        # Distance to itself is 0; the expansion leaves rounding noise there.
        diagonal = torch.arange(start, stop, device=x.device)
        dist[diagonal - start, diagonal] = 0.0
        for i, (lab, onehot, size) in enumerate(zip(labelings, onehots, sizes, strict=True)):
            own = lab[start:stop]
            sums = dist @ onehot  # (block, k): total distance to each cluster
            own_size = size[own]
            inside = sums.gather(1, own[:, None])[:, 0] / (own_size - 1).clamp(min=1)
            means = sums / size.clamp(min=1)
            means.scatter_(1, own[:, None], math.inf)
            means[:, size == 0] = math.inf
            nearest_other = means.min(1).values
            spread = torch.maximum(inside, nearest_other)
            score = (nearest_other - inside) / spread.clamp(min=torch.finfo(torch.float32).tiny)
            score = torch.where((own_size > 1) & (spread > 0), score, 0.0)
            totals[i] += float(score.sum(dtype=torch.float64))
    return [t / m for t in totals]


def _hungarian(cost: torch.Tensor) -> list[int]:
    """Column of each row in the assignment of least total cost (rows <= columns).

    The O(n^2 m) shortest augmenting path method with potentials (Kuhn-Munkres as Jonker and
    Volgenant write it), its inner loops over columns done as float64 vector operations.
    """
    n, m = cost.shape
    a = torch.zeros(n + 1, m + 1, dtype=torch.float64)
    a[1:, 1:] = cost
    u = torch.zeros(n + 1, dtype=torch.float64)
    v = torch.zeros(m + 1, dtype=torch.float64)
    owner = torch.zeros(m + 1, dtype=torch.int64)  # row matched to each column, 0 for none
    way = torch.zeros(m + 1, dtype=torch.int64)
    for i in range(1, n + 1):
        owner[0] = i
        column = 0
        slack = torch.full((m + 1,), math.inf, dtype=torch.float64)
        used = torch.zeros(m + 1, dtype=torch.bool)
        while True:
            used[column] = True
            row = int(owner[column])
            reduced = a[row] - u[row] - v
            better = ~used & (reduced < slack)
            slack = torch.where(better, reduced, slack)
            way = torch.where(better, column, way)
            free_slack = torch.where(used, math.inf, slack)
            nxt = int(free_slack.argmin())
            delta = free_slack[nxt]
            u.index_add_(0, owner[used], delta.expand(int(used.sum())))
            v = torch.where(used, v - delta, v)
            slack = torch.where(used, slack, slack - delta)
            column = nxt
            if int(owner[column]) == 0:
                break
        while column:
            previous = int(way[column])
            owner[column] = owner[previous]
            column = previous
    match = [0] * n
    for j in range(1, m + 1):
        if int(owner[j]):
            match[int(owner[j]) - 1] = j - 1
    return match
