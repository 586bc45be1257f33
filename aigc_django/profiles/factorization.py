"""Implicit-feedback matrix factorization in torch: ALS with conjugate-gradient solves.

The model is Hu, Koren and Volinsky's "Collaborative Filtering for Implicit Feedback
Datasets" (2008). Every (visitor, item) pair has a preference ``p = 1`` when the visitor
did something with the item (summed weight ``w > 0``) and ``p = 0`` otherwise, with a
confidence ``c = 1 + alpha * w`` (``c = 1`` for the unseen pairs). ALS alternates between
solving, for every user ``u``::

    (YᵀY + Yᵀ(C_u - I)Y + λI) x_u = Yᵀ C_u p(u)

and the same for every item. As in ``implicit``'s CG solver (Takács, Pilászy, Tikk 2011),
each solve is a few conjugate-gradient steps warm-started from the current factors; here
the steps run for many users (then items) at once as sparse matrix products (a sampled
dense-dense product for ``y_i · x_u`` on the observed pairs, then a CSR x dense product),
so there is no Python loop over users and the same code runs on CPU and CUDA. Started
from the same factors, it gives implicit's answer up to float32 rounding.

Only torch and safetensors are needed: the module knows nothing about Django. Example::

    f = fit_als(users, items, weights, n_users, n_items, factors=32, alpha=2.0, seed=0)
    top = recommend(f, torch.arange(n_users), k=10, exclude=(users, items))
    save(f, directory)  # config.json + model.safetensors; load(directory) reads them back
"""

from __future__ import annotations

import functools
import itertools
import json
import math
import time
import warnings
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

import torch
from safetensors.torch import load_file, save_file

__all__ = [
    "Factorization",
    "Split",
    "fit_als",
    "leave_last_out",
    "load",
    "ndcg_at_k",
    "popularity_ranking",
    "recommend",
    "save",
    "similar_items",
    "top_items_for_vector",
    "training_loss",
]

T = TypeVar("T")

FORMAT_VERSION = 1
CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"

# implicit stops a user's CG solve once the squared residual falls below this.
_CG_TOLERANCE = 1e-20
# Score matrices in recommend() are built this many elements at a time (128 MiB of float32).
_SCORE_CHUNK = 1 << 25
# Target size of one range of factors in the blocked sparse products (see _Csr).
_BLOCK_BYTES = 4 << 20
# From this many interactions on, CPU fits run on worker threads (see _Workers); below it
# the operations are too short for the threads to pay off.
_WORKERS_FROM = 1 << 17
_CHUNKS_PER_THREAD = 2


@dataclass
class Factorization:
    """A fitted factorization: ``user_factors[u] @ item_factors[i]`` scores item ``i`` for
    user ``u``. Users and items without any interaction have zero factors (score 0)."""

    user_factors: torch.Tensor  # (n_users, factors) float32
    item_factors: torch.Tensor  # (n_items, factors) float32
    config: dict[str, Any] = field(default_factory=dict)

    @property
    def device(self) -> torch.device:
        return self.user_factors.device

    def to(self, device: torch.device | str) -> Factorization:
        """The same factorization with its tensors on ``device``."""
        return Factorization(
            self.user_factors.to(device), self.item_factors.to(device), dict(self.config)
        )


class Split(NamedTuple):
    """A leave-last-out split: training interactions and one held-out item per test user."""

    train_users: torch.Tensor
    train_items: torch.Tensor
    train_weights: torch.Tensor
    test_users: torch.Tensor
    test_items: torch.Tensor


class _Chunk:
    """The pairs of the rows [start, stop) of a ``_Csr``, as one CSR tile per minor range.

    Its ``confidence``, ``extra`` and ``values`` are contiguous slices of the ``_Csr``'s;
    every tile's matrix shares its values with a slice of ``values``, the buffer that
    sampled products write and sparse products read, so a CG step allocates no (nnz,)
    tensors.
    """

    def __init__(
        self,
        start: int,
        stop: int,
        tiles: list[tuple[torch.Tensor, int, int]],
        csr: _Csr,
        at: slice,
    ) -> None:
        self.start, self.stop = start, stop
        self.tiles = tiles  # (CSR matrix of shape (stop - start, high - low), low, high)
        self.confidence = csr.confidence[at]
        self.extra = csr.extra[at]
        self.values = csr.values[at]

    def sample(self, left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
        """Write ``left[u] · right[i]`` for every stored pair (u, i) into ``values``;
        ``left`` holds this chunk's rows only."""
        for work, low, high in self.tiles:
            # ``work`` as both input and output: torch then skips copying the pattern over.
            torch.sparse.sampled_addmm(work, left, right[low:high].T, beta=0.0, alpha=1.0, out=work)
        return self.values

    def add_sum_rows(self, out: torch.Tensor, right: torch.Tensor, beta: float = 1.0) -> None:
        """``out[u] = beta * out[u] + Σ_i values[u, i] * right[i]`` for this chunk's rows, in
        place (``torch.mm(..., out=)`` would zero-fill and copy a full-size temporary)."""
        if not self.tiles and beta != 1.0:
            out.mul_(beta)  # rows with nothing observed
        for work, low, high in self.tiles:
            torch.addmm(out, work, right[low:high], beta=beta, out=out)
            beta = 1.0


class _Csr:
    """The observed pairs as a (major, minor) sparse matrix whose values change, in tiles.

    Rows are cut into ``chunks`` of about equal work, which worker threads solve side by
    side, and minor indices into ranges: when the minor factors are much larger than the
    CPU cache (the item half-step reads user factors at random), a range that fits in
    cache makes the sampled and sparse products several times faster. ``confidence``,
    ``extra`` and ``values`` are in (chunk, range, major, minor) order.
    """

    def __init__(
        self,
        minor: torch.Tensor,
        confidence: torch.Tensor,
        shape: tuple[int, int],
        counts: torch.Tensor,
        bounds: list[int],
        width: int,
        index_dtype: torch.dtype,
    ) -> None:
        """``minor`` and ``confidence`` in (chunk, range, major, minor) order;
        ``counts[b, u]`` pairs in row u and minor range b, which covers minor indices
        [b * width, (b + 1) * width); chunk c holds rows [bounds[c], bounds[c + 1])."""
        m = shape[1]
        self.shape = shape
        self.confidence = confidence  # c = 1 + alpha * w
        self.extra = confidence - 1.0  # c - 1 = alpha * w
        self.values = torch.zeros_like(confidence)
        self.chunks: list[_Chunk] = []
        start = 0
        for row_start, row_stop in itertools.pairwise(bounds):
            rows = counts[:, row_start:row_stop]
            crow = torch.zeros(
                rows.shape[0], row_stop - row_start + 1, dtype=torch.int64, device=minor.device
            )
            torch.cumsum(rows, 1, out=crow[:, 1:])
            chunk_start = start
            tiles = []
            for b, count in enumerate(rows.sum(1).tolist()):
                if not count:
                    continue
                stop = start + count
                low, high = b * width, min(m, (b + 1) * width)
                work = torch.sparse_csr_tensor(
                    crow[b].to(index_dtype),
                    (minor[start:stop] - low).to(index_dtype),
                    self.values[start:stop],
                    (row_stop - row_start, high - low),
                    check_invariants=False,
                )
                tiles.append((work, low, high))
                start = stop
            at = slice(chunk_start, start)
            self.chunks.append(_Chunk(row_start, row_stop, tiles, self, at))
        self.empty_rows = (counts.sum(0) == 0).nonzero().flatten()

    def sample(self, left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
        """``left[u] · right[i]`` for every stored pair (u, i), in ``values`` order."""
        for chunk in self.chunks:
            chunk.sample(left[chunk.start : chunk.stop], right)
        return self.values


def _minor_blocks(n_major: int, n_minor: int, factors: int, device: torch.device) -> int:
    """How many minor-index ranges to split a half-step into (see ``_Csr``).

    Ranges of about _BLOCK_BYTES of minor factors stay in a CPU's last-level cache; every
    extra range costs one more pass over the major rows, so there are at most twice as
    many as the minor factors outweigh the major ones.
    """
    if device.type != "cpu":
        return 1
    minor_bytes, major_bytes = n_minor * factors * 4, n_major * factors * 4
    if minor_bytes <= 2 * _BLOCK_BYTES:
        return 1
    return max(1, min(-(-minor_bytes // _BLOCK_BYTES), 2 * minor_bytes // major_bytes))


class _Buffers:
    """(rows, factors) scratch tensors for the CG solves, shared by both half-steps."""

    def __init__(self, rows: int, factors: int, device: torch.device) -> None:
        self.r, self.p, self.ap = (torch.empty(rows, factors, device=device) for _ in range(3))


# ------------------------------------------------------------------------------ fitting


def fit_als(
    users: torch.Tensor,
    items: torch.Tensor,
    weights: torch.Tensor,
    n_users: int,
    n_items: int,
    *,
    factors: int = 64,
    regularization: float = 0.01,
    alpha: float = 1.0,
    iterations: int = 15,
    cg_steps: int = 3,
    seed: int = 0,
    device: torch.device | str | None = None,
    compute_loss: bool = True,
    progress: Callable[[int, int], None] | None = None,
) -> Factorization:
    """Factorize the implicit feedback in the COO triples (users, items, weights).

    Repeated (user, item) pairs are summed; pairs whose summed weight is 0 count as unseen.
    Confidence is ``1 + alpha * weight``; ``regularization`` is the plain L2 weight λ (not
    scaled by the number of interactions), as in ``implicit``. Each of the ``iterations``
    solves users then items with ``cg_steps`` conjugate-gradient steps warm-started from
    the previous factors; factors start uniform in [0, 0.01) from ``seed``.

    ``device`` (default: the device of ``users``) is where the work runs and where the
    returned factors live; "cuda" works when torch sees a GPU. On CPU, fits of 131,072
    interactions or more run on ``torch.get_num_threads()`` worker threads, each solving
    its share of the rows with single-threaded torch operations (like implicit's one
    parallel loop per half-step: a busy machine slows many short parallel regions far more
    than a few long ones); smaller fits run single-threaded. The caller's thread setting is
    put back afterwards, but other threads that start torch work during the fit may see
    one thread.

    ``progress(done, iterations)`` is called after each iteration. With ``compute_loss``
    the training loss (implicit's ``calculate_loss``) after every iteration goes into
    ``config["loss"]``; it costs about one CG step each.

    Raises ``ValueError`` for mismatched lengths, indices out of range, negative or
    non-finite weights, bad hyperparameters, or no positive weight at all.
    """
    _check_hyperparameters(factors, regularization, alpha, iterations, cg_steps)
    target = torch.device(device) if device is not None else users.device
    threads, chunks = 0, 1
    if target.type == "cpu" and torch.get_num_threads() > 1:
        threads = torch.get_num_threads() if len(users) >= _WORKERS_FROM else 1
        # A few chunks per thread, so a thread slowed by other work gets fewer of them.
        chunks = _CHUNKS_PER_THREAD * threads if threads > 1 else 1
    started = time.perf_counter()
    with torch.no_grad(), _quiet_sparse_warnings(), _Workers(threads, chunks) as workers:
        users, items, weights = _check_triples(users, items, weights, n_users, n_items)
        by_user, by_item = _build_csr(
            users, items, weights, n_users, n_items, alpha, target, factors, workers.chunks
        )
        buffers = _Buffers(max(n_users, n_items), factors, target)

        generator = torch.Generator().manual_seed(seed)
        # implicit: random((users, f)) * 0.01, then the same for items.
        user_factors = (torch.rand(n_users, factors, generator=generator) * 0.01).to(target)
        item_factors = (torch.rand(n_items, factors, generator=generator) * 0.01).to(target)

        losses: list[float] = []
        for iteration in range(iterations):
            for csr, x, y in (
                (by_user, user_factors, item_factors),
                (by_item, item_factors, user_factors),
            ):
                _solve_cg(csr, x, y, regularization, cg_steps, buffers, workers)
            if compute_loss:
                loss = functools.partial(_loss, by_user, user_factors, item_factors, regularization)
                losses.append(workers.run([loss])[0])
            if progress is not None:
                progress(iteration + 1, iterations)

    config = {
        "format_version": FORMAT_VERSION,
        "algorithm": "als-cg",
        "confidence": "1 + alpha * weight",
        "factors": factors,
        "regularization": regularization,
        "alpha": alpha,
        "iterations": iterations,
        "cg_steps": cg_steps,
        "seed": seed,
        "n_users": n_users,
        "n_items": n_items,
        "interactions": int(by_user.values.numel()),
        "loss": losses,
        "device": str(target),
        "seconds": round(time.perf_counter() - started, 3),
        "torch": torch.__version__,
    }
    return Factorization(user_factors, item_factors, config)


def training_loss(
    f: Factorization,
    users: torch.Tensor,
    items: torch.Tensor,
    weights: torch.Tensor,
    *,
    alpha: float | None = None,
    regularization: float | None = None,
) -> float:
    """The weighted squared loss of ``f`` on these interactions, normalised like implicit's
    ``calculate_loss``: (Σ c (p - xᵀy)² + λ(‖X‖² + ‖Y‖²)) / (Σ c over all pairs)."""
    n_users, n_items = f.user_factors.shape[0], f.item_factors.shape[0]
    alpha = f.config.get("alpha", 1.0) if alpha is None else alpha
    regularization = (
        f.config.get("regularization", 0.0) if regularization is None else regularization
    )
    with torch.no_grad(), _quiet_sparse_warnings():
        users, items, weights = _check_triples(users, items, weights, n_users, n_items)
        by_user, _ = _build_csr(
            users, items, weights, n_users, n_items, alpha, f.device, f.user_factors.shape[1]
        )
        return _loss(by_user, f.user_factors, f.item_factors, regularization)


def _solve_cg(
    csr: _Csr,
    x: torch.Tensor,
    y: torch.Tensor,
    regularization: float,
    cg_steps: int,
    buffers: _Buffers,
    workers: _Workers,
) -> None:
    """``cg_steps`` CG steps on every row's normal equations, updating ``x`` in place,
    chunk by chunk on the worker threads."""
    # YᵀY + λI, in slices of Y on the workers: the calling thread runs no parallel work.
    slices = torch.tensor_split(y, max(1, workers.threads))
    yty = sum(workers.run([functools.partial(torch.mm, part.T, part) for part in slices]))
    yty.diagonal().add_(regularization)
    workers.run(
        [
            functools.partial(_solve_chunk, chunk, x, y, yty, cg_steps, buffers)
            for chunk in csr.chunks
        ]
    )
    # Nothing observed: the exact solution is 0, as implicit sets it.
    if csr.empty_rows.numel():
        x.index_fill_(0, csr.empty_rows, 0.0)


def _solve_chunk(
    chunk: _Chunk,
    x: torch.Tensor,
    y: torch.Tensor,
    yty: torch.Tensor,
    cg_steps: int,
    buffers: _Buffers,
) -> None:
    """CG on the rows of one chunk. Per row this is exactly implicit's
    ``least_squares_cg``. The large tensors live in ``buffers`` and ``chunk.values`` and
    every product writes in place: fresh (rows, factors) temporaries cost page faults and
    zero-fills on every step."""
    rows = slice(chunk.start, chunk.stop)
    x, r, p, ap = x[rows], buffers.r[rows], buffers.p[rows], buffers.ap[rows]

    # r = b - A x with b = Σ c_i y_i and A x = (YᵀY + λI) x + Σ (c_i - 1)(y_i · x) y_i
    values = chunk.sample(x, y)
    torch.addcmul(chunk.confidence, chunk.extra, values, value=-1.0, out=values)
    torch.mm(x, yty, out=r)
    chunk.add_sum_rows(r, y, beta=-1.0)
    p.copy_(r)
    rs_old = _row_dot(r, r)
    # implicit stops a row once its squared residual is tiny; a stopped row keeps zero steps.
    active = rs_old >= _CG_TOLERANCE
    for step in range(cg_steps):
        # A p without forming A: the dense part from YᵀY, the sparse part pair by pair.
        chunk.sample(p, y).mul_(chunk.extra)
        torch.mm(p, yty, out=ap)
        chunk.add_sum_rows(ap, y)
        # pᵀAp > 0 for p != 0 as A is positive definite; the floor only guards rounding.
        p_ap = _row_dot(p, ap).clamp_min_(_CG_TOLERANCE)
        step_size = torch.where(active, rs_old / p_ap, 0.0).unsqueeze(1)
        x.addcmul_(step_size, p)
        if step == cg_steps - 1:
            break
        r.addcmul_(step_size, ap, value=-1.0)
        rs_new = _row_dot(r, r)
        active &= rs_new >= _CG_TOLERANCE
        ratio = torch.where(active, rs_new / rs_old, 0.0).unsqueeze(1)
        torch.addcmul(r, ratio, p, out=p)  # p = r + ratio * p
        rs_old = rs_new


class _Workers:
    """Threads that run single-threaded torch operations, a chunk of rows at a time.

    torch's intra-op threads meet at a barrier after every operation; a CG step has a few
    dozen operations, and on a machine whose cores are shared each barrier waits for the
    slowest thread. Chunks on threads that each run torch single-threaded (the setting is
    per thread, and torch releases the GIL inside operations) meet once per half-step,
    and the pool hands the next chunk to whichever thread is free. ``threads=1`` runs in
    the calling thread with torch set to one thread (small fits, whose operations are too
    short to share, and where waking a worker would cost more than the work);
    ``threads=0`` runs in the calling thread as it is set up (one torch thread, or CUDA).
    """

    def __init__(self, threads: int, chunks: int) -> None:
        self.threads = threads
        self.chunks = chunks
        self._caller_threads = torch.get_num_threads()
        self._pool: ThreadPoolExecutor | None = None

    def __enter__(self) -> _Workers:
        if self.threads == 1:
            torch.set_num_threads(1)
        elif self.threads > 1:
            self._pool = ThreadPoolExecutor(
                self.threads,
                thread_name_prefix="aigc-als",
                initializer=torch.set_num_threads,
                initargs=(1,),
            )
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._pool is not None:
            self._pool.shutdown()
        if self.threads:
            # torch.set_num_threads(1) also stored 1 as the default for threads that
            # start later; put the caller's number back.
            torch.set_num_threads(self._caller_threads)

    def run(self, jobs: list[Callable[[], T]]) -> list[T]:
        """Run the jobs, on the pool when there is one, and return their results."""
        if self._pool is None:
            return [job() for job in jobs]
        # Grad mode is per thread: turn it off in the workers too.
        return [future.result() for future in [self._pool.submit(_no_grad, j) for j in jobs]]


def _no_grad(job: Callable[[], T]) -> T:
    with torch.no_grad():
        return job()


def _loss(csr: _Csr, x: torch.Tensor, y: torch.Tensor, regularization: float) -> float:
    # Σ_u Σ_all_i c (p - s)² = Σ_u xᵀYᵀYx + Σ_observed [(c - 1) s² - 2 c s + c]
    dots = csr.sample(x, y)
    dense = _row_dot(x @ (y.T @ y), x).sum(dtype=torch.float64)
    observed = ((csr.extra * dots - 2.0 * csr.confidence) * dots + csr.confidence).sum(
        dtype=torch.float64
    )
    norms = x.pow(2).sum(dtype=torch.float64) + y.pow(2).sum(dtype=torch.float64)
    total = float(dense + observed + regularization * norms)
    n_users, n_items = csr.shape
    confidence_mass = float(csr.extra.sum(dtype=torch.float64)) + n_users * n_items
    return total / confidence_mass


def _row_dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``a[u] · b[u]`` for every row u."""
    # A batched (1 x f)(f x 1) product: several times faster on CPU than vecdot or sum(a * b).
    return torch.bmm(a.unsqueeze(1), b.unsqueeze(2)).view(-1)


# ------------------------------------------------------------------------ input checks


def _check_hyperparameters(
    factors: int, regularization: float, alpha: float, iterations: int, cg_steps: int
) -> None:
    if int(factors) != factors or factors < 1:
        raise ValueError(f"factors must be a positive integer, got {factors!r}.")
    if not math.isfinite(regularization) or regularization < 0:
        raise ValueError(f"regularization must be finite and >= 0, got {regularization!r}.")
    if not math.isfinite(alpha) or alpha < 0:
        raise ValueError(f"alpha must be finite and >= 0, got {alpha!r}.")
    if int(iterations) != iterations or iterations < 0:
        raise ValueError(f"iterations must be an integer >= 0, got {iterations!r}.")
    if int(cg_steps) != cg_steps or cg_steps < 1:
        raise ValueError(f"cg_steps must be a positive integer, got {cg_steps!r}.")


def _check_triples(
    users: torch.Tensor, items: torch.Tensor, weights: torch.Tensor, n_users: int, n_items: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    users, items = torch.as_tensor(users), torch.as_tensor(items)
    weights = torch.as_tensor(weights)
    for name, t in (("users", users), ("items", items), ("weights", weights)):
        if t.dim() != 1:
            raise ValueError(f"{name} must be 1-D, got shape {tuple(t.shape)}.")
    if not (len(users) == len(items) == len(weights)):
        raise ValueError(
            f"users, items and weights must have the same length, got "
            f"{len(users)}, {len(items)} and {len(weights)}."
        )
    if users.is_floating_point() or items.is_floating_point() or users.is_complex():
        raise ValueError("users and items must be integer tensors.")
    if n_users < 1 or n_items < 1:
        raise ValueError(f"n_users and n_items must be >= 1, got {n_users} and {n_items}.")
    _check_range("users", users, n_users)
    _check_range("items", items, n_items)
    weights = weights.float()
    if not bool(torch.isfinite(weights).all()):
        raise ValueError("weights contain NaN or infinite values.")
    if len(weights) and float(weights.min()) < 0:
        raise ValueError(
            "weights must be >= 0: implicit feedback has no negative confidence "
            "(drop or clamp negative events before factorizing)."
        )
    if not bool((weights > 0).any()):
        raise ValueError("no interaction has a positive weight: nothing to factorize.")
    return users.long(), items.long(), weights


def _check_range(name: str, index: torch.Tensor, size: int) -> None:
    if not len(index):
        return
    low, high = int(index.min()), int(index.max())
    if low < 0 or high >= size:
        raise ValueError(f"{name} must lie in [0, {size}), got values from {low} to {high}.")


def _build_csr(
    users: torch.Tensor,
    items: torch.Tensor,
    weights: torch.Tensor,
    n_users: int,
    n_items: int,
    alpha: float,
    device: torch.device,
    factors: int,
    chunks: int = 1,
) -> tuple[_Csr, _Csr]:
    """Row-major (users x items) and column-major (items x users) CSR of the summed
    positive weights, with confidence values, on ``device``, rows cut in ``chunks``."""
    users, items, weights = users.to(device), items.to(device), weights.to(device)
    keys, inverse = torch.unique(users * n_items + items, return_inverse=True)
    summed = torch.zeros(len(keys), dtype=torch.float64, device=device)
    summed.index_add_(0, inverse, weights.double())
    keep = summed > 0
    if not bool(keep.all()):
        keys, summed = keys[keep], summed[keep]
    summed = summed.float()
    rows, cols = keys // n_items, keys % n_items
    confidence = 1.0 + alpha * summed

    # MKL and cuSPARSE take 32-bit indices where they fit, and run faster with them.
    small = max(n_users, n_items, len(keys)) < 2**31 - 1
    index_dtype = torch.int32 if small else torch.int64

    by_user = _csr_by(
        rows, cols, confidence, (n_users, n_items), factors, index_dtype, True, chunks
    )
    by_item = _csr_by(
        cols, rows, confidence, (n_items, n_users), factors, index_dtype, False, chunks
    )
    return by_user, by_item


def _csr_by(
    major: torch.Tensor,
    minor: torch.Tensor,
    confidence: torch.Tensor,
    shape: tuple[int, int],
    factors: int,
    index_dtype: torch.dtype,
    major_sorted: bool,
    chunks: int,
) -> _Csr:
    """A ``_Csr`` with ``major`` as its rows, from pairs sorted by (major, minor) when
    ``major_sorted``, else by (minor, major)."""
    n, m = shape
    device = major.device
    blocks = _minor_blocks(n, m, factors, device)
    width = -(-m // blocks)
    block = minor // width if blocks > 1 else None
    per_row = torch.bincount(major, minlength=n)
    # Chunks of about equal work: a row costs its pairs plus a few for its dense vectors.
    cost = torch.cumsum(per_row + 8, 0)
    targets = cost[-1] * torch.arange(1, chunks, device=device) // chunks
    cuts = torch.searchsorted(cost, targets, right=True).tolist()
    bounds = sorted({0, n, *cuts})
    if blocks == 1:
        counts = per_row.view(1, n)
        key = major
    else:
        counts = torch.bincount(block * n + major, minlength=blocks * n).view(blocks, n)
        chunk_of_row = torch.zeros(n, dtype=torch.int64, device=device)
        chunk_of_row[torch.tensor(bounds[1:-1], dtype=torch.int64, device=device)] = 1
        chunk_of_row = torch.cumsum(chunk_of_row, 0)
        key = (chunk_of_row[major] * blocks + block) * n + major
    # A stable sort keeps the columns ascending inside every row.
    if blocks > 1 or not major_sorted:
        order = torch.argsort(key, stable=True)
        minor, confidence = minor[order], confidence[order]
    return _Csr(minor, confidence, shape, counts, bounds, width, index_dtype)


class _quiet_sparse_warnings(warnings.catch_warnings):
    """Hide torch's "sparse CSR support is in beta" notice, which says nothing to callers."""

    def __enter__(self) -> None:
        super().__enter__()
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")


# ----------------------------------------------------------------------- recommending


def recommend(
    f: Factorization,
    user_rows: torch.Tensor,
    k: int = 10,
    exclude: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> torch.Tensor:
    """The ``k`` best item rows for each of ``user_rows``, best first: (len(user_rows), k).

    ``exclude`` is (users, items) pairs not to recommend, typically the training
    interactions (already seen). Where a user has fewer than ``k`` items left, the row
    ends with -1. The result is on the factors' device.
    """
    x = f.user_factors
    user_rows = torch.as_tensor(user_rows).to(x.device).long()
    _check_range("user_rows", user_rows, x.shape[0])
    return _rank(
        lambda rows: x[rows] @ f.item_factors.T, user_rows, f.item_factors.shape[0], k, exclude
    )


def popularity_ranking(
    items: torch.Tensor,
    n_items: int,
    user_rows: torch.Tensor,
    k: int = 10,
    *,
    weights: torch.Tensor | None = None,
    exclude: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> torch.Tensor:
    """The baseline: the same most popular items for everyone (by summed ``weights``, or by
    interaction count), minus each user's ``exclude`` pairs. Shaped like ``recommend``."""
    items = torch.as_tensor(items).long()
    _check_range("items", items, n_items)
    mass = torch.ones(len(items)) if weights is None else torch.as_tensor(weights).float().cpu()
    popularity = torch.zeros(n_items, dtype=torch.float64)
    popularity.index_add_(0, items.cpu(), mass.double())
    popularity = popularity.float()
    user_rows = torch.as_tensor(user_rows).long().cpu()
    return _rank(lambda rows: popularity.repeat(len(rows), 1), user_rows, n_items, k, exclude)


def _rank(
    score: Callable[[torch.Tensor], torch.Tensor],
    user_rows: torch.Tensor,
    n_items: int,
    k: int,
    exclude: tuple[torch.Tensor, torch.Tensor] | None,
) -> torch.Tensor:
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}.")
    k = min(k, n_items)
    device = user_rows.device
    seen = None
    if exclude is not None:
        seen = _exclusion_index(exclude, n_items, device)
    out = torch.empty(len(user_rows), k, dtype=torch.int64, device=device)
    chunk = max(1, _SCORE_CHUNK // n_items)
    with torch.no_grad():
        for start in range(0, len(user_rows), chunk):
            rows = user_rows[start : start + chunk]
            scores = score(rows)  # a fresh tensor: the seen items are masked in place
            if seen is not None:
                at, item = seen(rows)
                scores[at, item] = -math.inf
            values, best = torch.topk(scores, k, dim=1)
            best[values == -math.inf] = -1
            out[start : start + chunk] = best
    return out


def _exclusion_index(
    exclude: tuple[torch.Tensor, torch.Tensor], n_items: int, device: torch.device
) -> Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    """A function from a batch of user rows to (position in batch, item) pairs to mask."""
    users, items = (torch.as_tensor(t).to(device).long() for t in exclude)
    if users.shape != items.shape or users.dim() != 1:
        raise ValueError("exclude must be two 1-D tensors (users, items) of the same length.")
    _check_range("exclude items", items, n_items)
    n = int(users.max()) + 1 if len(users) else 0
    if len(users) and int(users.min()) < 0:
        raise ValueError("exclude users must be >= 0.")
    order = torch.argsort(users, stable=True)
    sorted_items = items[order]
    offsets = torch.zeros(n + 1, dtype=torch.int64, device=device)
    if n:
        offsets[1:] = torch.cumsum(torch.bincount(users, minlength=n), 0)

    def lookup(rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        known = rows < n
        start = torch.where(known, offsets[rows.clamp(max=n)], torch.zeros_like(rows))
        stop = torch.where(known, offsets[(rows + 1).clamp(max=n)], torch.zeros_like(rows))
        counts = stop - start
        at = torch.repeat_interleave(torch.arange(len(rows), device=device), counts)
        first = torch.cumsum(counts, 0) - counts
        index = start[at] + torch.arange(len(at), device=device) - first[at]
        return at, sorted_items[index]

    return lookup


def top_items_for_vector(
    f: Factorization,
    vector: torch.Tensor,
    k: int = 10,
    exclude_items: torch.Tensor | None = None,
) -> torch.Tensor:
    """The ``k`` items that score best against ``vector`` (a user-factor vector, e.g. the
    mean of a segment's members). ``vector`` of shape (factors,) gives (k,); a batch of
    shape (m, factors) gives (m, k). ``exclude_items`` are left out for every row."""
    y = f.item_factors
    vector = torch.as_tensor(vector).to(y.device, y.dtype)
    single = vector.dim() == 1
    batch = vector.unsqueeze(0) if single else vector
    if batch.dim() != 2 or batch.shape[1] != y.shape[1]:
        raise ValueError(f"vector must have {y.shape[1]} factors, got shape {tuple(vector.shape)}.")
    with torch.no_grad():
        scores = batch @ y.T
        if exclude_items is not None:
            exclude_items = torch.as_tensor(exclude_items).to(y.device).long()
            _check_range("exclude_items", exclude_items, y.shape[0])
            scores[:, exclude_items] = -math.inf
        values, best = torch.topk(scores, min(k, y.shape[0]), dim=1)
        best[values == -math.inf] = -1
    return best[0] if single else best


def similar_items(f: Factorization, item_rows: torch.Tensor, k: int = 10) -> torch.Tensor:
    """The ``k`` items most like each of ``item_rows`` by cosine of their factors, the item
    itself left out: (len(item_rows), k). Items without interactions match nothing well."""
    y = f.item_factors
    item_rows = torch.as_tensor(item_rows).to(y.device).long()
    _check_range("item_rows", item_rows, y.shape[0])
    with torch.no_grad():
        unit = y / y.norm(dim=1, keepdim=True).clamp_min(1e-12)
        scores = unit[item_rows] @ unit.T
        scores[torch.arange(len(item_rows), device=y.device), item_rows] = -math.inf
        values, best = torch.topk(scores, min(k, y.shape[0] - 1), dim=1)
        best[values == -math.inf] = -1
    return best


# ------------------------------------------------------------------------- save / load


def save(f: Factorization, directory: str | Path) -> Path:
    """Write ``config.json`` and ``model.safetensors`` into ``directory`` (created)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tensors = {
        "user_factors": f.user_factors.detach().contiguous().cpu(),
        "item_factors": f.item_factors.detach().contiguous().cpu(),
    }
    save_file(tensors, directory / WEIGHTS_NAME, metadata={"format": "pt"})
    config = {**f.config, "format_version": FORMAT_VERSION}
    (directory / CONFIG_NAME).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    return directory


def load(directory: str | Path, device: torch.device | str = "cpu") -> Factorization:
    """Read a factorization written by ``save``, onto ``device``."""
    directory = Path(directory)
    config = json.loads((directory / CONFIG_NAME).read_text())
    version = config.get("format_version", 0)
    if version > FORMAT_VERSION:
        raise ValueError(
            f"{directory} holds format version {version}; this code reads up to {FORMAT_VERSION}."
        )
    tensors = load_file(directory / WEIGHTS_NAME, device=str(torch.device(device)))
    return Factorization(tensors["user_factors"], tensors["item_factors"], config)


# -------------------------------------------------------------------------- evaluation


def ndcg_at_k(ranked: torch.Tensor, held_out: torch.Tensor, k: int = 10) -> float:
    """Mean NDCG@k with one relevant item per user (leave-one-out): ``1 / log2(rank + 2)``
    when ``held_out[j]`` is at 0-based ``rank`` < k in ``ranked[j]``, else 0."""
    ranked = torch.as_tensor(ranked)
    held_out = torch.as_tensor(held_out).to(ranked.device)
    if ranked.dim() != 2 or held_out.shape != (ranked.shape[0],):
        raise ValueError(
            f"ranked must be (users, k) and held_out (users,), got {tuple(ranked.shape)} "
            f"and {tuple(held_out.shape)}."
        )
    if not len(held_out):
        return float("nan")
    top = ranked[:, :k]
    hits = top == held_out.unsqueeze(1)
    gains = 1.0 / torch.log2(torch.arange(top.shape[1], device=top.device, dtype=torch.float64) + 2)
    return float((hits.double() * gains).sum() / len(held_out))


def leave_last_out(
    users: torch.Tensor,
    items: torch.Tensor,
    times: torch.Tensor,
    weights: torch.Tensor | None = None,
) -> Split:
    """Hold out each user's last interaction (by ``times``, ties by input order).

    A user is tested when they touched at least two distinct items; every interaction of
    theirs with the held-out item leaves the training set (so the item is not excluded as
    already seen). Other users keep all their interactions in training. ``weights``
    default to 1.
    """
    users, items, times = (torch.as_tensor(t) for t in (users, items, times))
    if not (users.shape == items.shape == times.shape) or users.dim() != 1:
        raise ValueError("users, items and times must be 1-D and of the same length.")
    weights = torch.ones(len(users)) if weights is None else torch.as_tensor(weights).float()
    if weights.shape != users.shape:
        raise ValueError("weights must have the same length as users.")
    users, items = users.long(), items.long()
    if not len(users):
        empty = torch.zeros(0, dtype=torch.int64)
        return Split(empty, empty, torch.zeros(0), empty, empty)
    if int(users.min()) < 0 or int(items.min()) < 0:
        raise ValueError("users and items must be >= 0.")
    n_users = int(users.max()) + 1
    by_time = torch.argsort(times, stable=True)
    order = by_time[torch.argsort(users[by_time], stable=True)]
    counts = torch.bincount(users, minlength=n_users)
    has_any = counts > 0
    last_position = torch.cumsum(counts, 0) - 1
    last_item = torch.full((n_users,), -1, dtype=torch.int64)
    last_item[has_any] = items[order[last_position[has_any]]]

    same = items == last_item[users]
    others = torch.bincount(users[~same], minlength=n_users)
    tested = has_any & (others > 0)
    held = same & tested[users]
    test_users = tested.nonzero().flatten()
    return Split(users[~held], items[~held], weights[~held], test_users, last_item[test_users])
