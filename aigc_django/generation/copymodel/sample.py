"""Batched, seeded sampling of copy candidates and their ranking under constraints.

Every row of a batch is one candidate for one field of one brief. All rows start with the
same number of control tokens, so the whole batch runs as one tensor: one forward pass per
generated token for every brief, field and candidate together.

Sampling is temperature and top-k, drawn with the Gumbel-max trick from a counter-based hash
of (row key, step, token): a row's draws depend on its own key only, never on the other rows
of the batch or on a global random state, so the same seed gives the same copy.

Candidates are ranked by the model's mean log-likelihood per token among those that pass the
hard constraints (known, fillable placeholders only; no fact that is not a placeholder; no
repeated words) and fit the field's length limit once filled. When none fits, the best
passing candidate is cut at a token boundary (never inside a product name) to the limit.
"""

from __future__ import annotations

import itertools
import re
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from aigc_django.generation.briefs import PLACEHOLDERS
from aigc_django.generation.copymodel.model import LoadedModel
from aigc_django.generation.copymodel.tokenizer import PREFIX_LENGTH, SPACE, is_placeholder

MASK32 = 0xFFFFFFFF
TRAILING = re.compile(r"[\s,;:\-\u2013\u2014(/&]+$")
# Words a cut text must not end on.
DANGLING = {"a", "an", "the", "and", "or", "for", "with", "of", "to", "in", "on", "at", "your"}


@dataclass
class Request:
    """One field of one brief: what to condition on and how to judge a candidate."""

    prefix: list[int]
    limit: int
    key: int
    # raw text with placeholders -> copy with the brief's facts
    fill: Callable[[str], str]
    # (raw text, filled copy) -> hard problems (empty when acceptable)
    check: Callable[[str, str], list[str]]
    # token ids this request must never sample (placeholders it cannot fill)
    forbid: list[int] = field(default_factory=list)


@dataclass
class Choice:
    """The copy chosen for a request, and how it was chosen."""

    text: str
    raw: str
    score: float
    candidates: int
    passing: int
    truncated: bool = False
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def _mul32(x: torch.Tensor, constant: int) -> torch.Tensor:
    """``x * constant mod 2**32`` for int64 tensors holding 32-bit values, without overflow."""
    low, high = constant & 0xFFFF, constant >> 16
    return (x * low + (((x * high) & 0xFFFF) << 16)) & MASK32


def _hash32(x: torch.Tensor) -> torch.Tensor:
    """A 32-bit integer hash (lowbias32) applied elementwise."""
    x = x & MASK32
    x = x ^ (x >> 16)
    x = _mul32(x, 0x7FEB352D)
    x = x ^ (x >> 15)
    x = _mul32(x, 0x846CA68B)
    return x ^ (x >> 16)


def gumbel_noise(keys: torch.Tensor, step: int, vocab: int) -> torch.Tensor:
    """Gumbel noise ``[rows, vocab]`` that depends only on each row's key and the step."""
    row = _hash32(keys ^ _hash32(torch.full_like(keys, step * 0x9E3779B9 & MASK32)))
    tokens = _mul32(torch.arange(vocab, device=keys.device, dtype=torch.int64), 0x9E3779B9)
    bits = _hash32(_hash32(row[:, None] ^ tokens[None, :]) + row[:, None])
    uniform = (bits.double() + 0.5) / 2.0**32
    return -torch.log(-torch.log(uniform))


def row_key(seed: int, *parts: object) -> int:
    """A 32-bit key for one row from the brief's seed and what tells the rows apart."""
    text = ":".join(str(p) for p in (seed, *parts))
    return zlib.crc32(text.encode()) & MASK32


@torch.inference_mode()
def sample_tokens(
    loaded: LoadedModel,
    prefixes: list[list[int]],
    keys: list[int],
    max_tokens: list[int],
    temperature: float = 0.9,
    top_k: int = 40,
    forbid: list[list[int]] | None = None,
) -> tuple[list[list[int]], list[float], list[bool]]:
    """Sample a continuation per row: (token ids, mean log-likelihood, ended with <eos>).

    ``max_tokens`` caps each row (a row that reaches it has not finished); ``forbid`` lists
    token ids per row that the row must not sample. Log-likelihoods are under the model
    itself (temperature 1), the ranking's measure.
    """
    model, tokenizer = loaded.model, loaded.tokenizer
    device = loaded.device
    rows = len(prefixes)
    if not rows:
        return [], [], []
    vocab = len(tokenizer)
    room = model.config.max_len - len(prefixes[0])
    caps = torch.tensor([max(1, min(m, room)) for m in max_tokens], device=device)
    steps = int(caps.max())
    seq = torch.tensor(prefixes, dtype=torch.long, device=device)
    key_tensor = torch.tensor(keys, dtype=torch.int64, device=device)
    banned = torch.zeros(rows, vocab, dtype=torch.bool, device=device)
    banned[:, tokenizer.control_ids()] = True
    for row, ids in enumerate(forbid or []):
        if ids:
            banned[row, ids] = True
    total = torch.zeros(rows, dtype=torch.float64, device=device)
    count = torch.zeros(rows, dtype=torch.float64, device=device)
    ended = torch.zeros(rows, dtype=torch.bool, device=device)
    out = torch.full((rows, steps), tokenizer.pad_id, dtype=torch.long, device=device)
    k = max(1, min(int(top_k), vocab)) if top_k else vocab
    # Rows still sampling (finished rows leave the batch), and the key/value cache of those.
    live = torch.arange(rows, device=device)
    logits, cache = model.step(seq)
    for step in range(steps):
        last = logits[:, -1, :].float()
        logp = torch.log_softmax(last, dim=-1)
        scaled = (last / max(temperature, 1e-4)).masked_fill(banned[live], float("-inf"))
        if step == 0:
            scaled[:, tokenizer.eos_id] = float("-inf")
        if k < vocab:
            threshold = torch.topk(scaled, k, dim=-1).values[:, -1:]
            scaled = scaled.masked_fill(scaled < threshold, float("-inf"))
        noise = gumbel_noise(key_tensor[live], step, vocab).to(scaled.dtype)
        choice = torch.argmax(scaled + noise, dim=-1)
        total[live] += logp.gather(1, choice[:, None])[:, 0].double()
        count[live] += 1
        out[live, step] = choice
        is_eos = choice == tokenizer.eos_id
        ended[live] |= is_eos
        keep = ~is_eos & (caps[live] > step + 1)
        if not bool(keep.any()):
            break
        if not bool(keep.all()):
            live, choice = live[keep], choice[keep]
            cache = [(kc[keep], vc[keep]) for kc, vc in cache]
        logits, cache = model.step(choice[:, None], cache)
    scores = (total / count.clamp_min(1)).tolist()
    return out.tolist(), scores, ended.tolist()


def repeats(raw: str) -> bool:
    """Whether a text repeats a word twice in a row, a word pair anywhere, or a placeholder."""
    words = [w.lower() for w in re.findall(r"\{?\w[\w'\u2019\-]*\}?", raw)]
    if any(a == b for a, b in itertools.pairwise(words)):
        return True
    if any(raw.count(placeholder) > 1 for placeholder in PLACEHOLDERS):
        return True
    pairs = list(itertools.pairwise(words))
    return len(pairs) != len(set(pairs))


def _tokens_text(loaded: LoadedModel, ids: list[int]) -> list[str]:
    tokenizer = loaded.tokenizer
    out = []
    for index in ids:
        if index == tokenizer.eos_id:
            break
        if index != tokenizer.pad_id:
            out.append(tokenizer.tokens[index])
    return out


def _join(tokens: list[str]) -> str:
    return "".join(t.replace(SPACE, " ") for t in tokens).strip()


def cut(tokens: list[str], request: Request) -> tuple[str, str] | None:
    """The longest prefix of ``tokens`` whose filled copy fits the limit, ending on a word
    that can end a phrase: (raw, filled), or None when not even one word fits."""
    for end in range(len(tokens), 0, -1):
        raw = TRAILING.sub("", _join(tokens[:end]))
        last = raw.rsplit(" ", 1)[-1].lower()
        if not raw or last in DANGLING:
            continue
        filled = request.fill(raw)
        if len(filled) <= request.limit and not request.check(raw, filled):
            return raw, filled
    return None


def choose(
    loaded: LoadedModel,
    requests: list[Request],
    candidates: int,
    temperature: float,
    top_k: int,
    round_: int = 0,
) -> list[Choice | None]:
    """Sample ``candidates`` per request in one batch and keep the best of each; None where
    no candidate passes the hard constraints."""
    prefixes, keys, caps, forbid = [], [], [], []
    for request in requests:
        if len(request.prefix) != PREFIX_LENGTH:
            raise ValueError("every request needs the same control prefix length")
        for candidate in range(candidates):
            prefixes.append(request.prefix)
            keys.append(row_key(request.key, candidate, round_))
            # Roughly two characters per token at least (a word and its space, a mark).
            caps.append(request.limit // 2 + 2)
            forbid.append(request.forbid)
    tokens, scores, ended = sample_tokens(loaded, prefixes, keys, caps, temperature, top_k, forbid)
    choices: list[Choice | None] = []
    for index, request in enumerate(requests):
        rows = range(index * candidates, (index + 1) * candidates)
        fitting, passing = [], []
        for row in rows:
            pieces = _tokens_text(loaded, tokens[row])
            raw = _join(pieces)
            if not raw:
                continue
            filled = request.fill(raw)
            problems = request.check(raw, filled)
            if repeats(raw):
                problems.append("repeats itself")
            if problems:
                continue
            passing.append((scores[row], row, pieces))
            if ended[row] and len(filled) <= request.limit:
                fitting.append((scores[row], row, raw, filled))
        if fitting:
            score, _, raw, filled = max(fitting, key=lambda c: (c[0], -c[1]))
            choices.append(Choice(filled, raw, score, candidates, len(passing)))
            continue
        chosen = None
        for score, _, pieces in sorted(passing, key=lambda c: (-c[0], c[1])):
            result = cut(pieces, request)
            if result is not None:
                raw, filled = result
                chosen = Choice(filled, raw, score, candidates, len(passing), truncated=True)
                break
        choices.append(chosen)
    return choices


def placeholder_tokens(loaded: LoadedModel) -> dict[str, list[int]]:
    """Ids of each placeholder's tokens (with and without the leading space)."""
    found: dict[str, list[int]] = {}
    for index, token in enumerate(loaded.tokenizer.tokens):
        if is_placeholder(token):
            found.setdefault(token.lstrip(SPACE), []).append(index)
    return found
