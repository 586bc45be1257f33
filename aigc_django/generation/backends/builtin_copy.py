"""The ``builtin`` copy backend: the app's own small transformer, trained on the shop's text.

Configure it (it is the default) under ``AIGC["COPY_BACKENDS"]``::

    "default": {
        "BACKEND": "aigc_django.generation.backends.builtin_copy.BuiltinCopyBackend",
        "OPTIONS": {
            "PATH": None,        # a model directory; None: the active copy ModelArtifact
            "DEVICE": "auto",    # "auto" (CUDA when there is one), "cpu", "cuda:1", ...
            "CANDIDATES": None,  # samples per field; None: AIGC["GENERATION"]["CANDIDATES"]
            "TEMPERATURE": 0.9,
            "TOP_K": 40,         # 0: sample from the whole vocabulary
        },
    }

Train a model first with ``manage.py aigc_train`` (or the ``aigc_django.train_copy_model``
task). The model is loaded once per process, on the first ``generate``.
"""

from __future__ import annotations

import itertools
import random
import re
from pathlib import Path
from typing import Any

from django.core.exceptions import ImproperlyConfigured

from aigc_django.generation.backends.base import CopyBackend, CopyDraft, torch_device
from aigc_django.generation.briefs import Brief, Product, fill_placeholders

OPTIONS = {"PATH", "DEVICE", "CANDIDATES", "TEMPERATURE", "TOP_K"}
ROUNDS = 3
# What a field falls back to when no sampled candidate passes (placeholders, in order).
FALLBACKS = {"cta": ["Shop {category}", "Shop now"]}
DEFAULT_FALLBACK = ["{product}", "{category}", "{brand}", "New in"]


def _number(options: dict[str, Any], name: str, kind: type, low: float, high: float) -> Any:
    value = options.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ImproperlyConfigured(f"{name} must be a number, not {value!r}.")
    if kind is int and not float(value).is_integer():
        raise ImproperlyConfigured(f"{name} must be a whole number, not {value!r}.")
    if not low <= value <= high:
        raise ImproperlyConfigured(f"{name} must be within {low}..{high}, not {value!r}.")
    return kind(value)


class BuiltinCopyBackend(CopyBackend):
    """Samples several candidates per field for all briefs in one batch and keeps the best."""

    name = "builtin"

    def __init__(self, alias: str, options: dict[str, Any]) -> None:
        super().__init__(alias, options)
        where = f"AIGC COPY_BACKENDS[{alias!r}] OPTIONS"
        unknown = set(self.options) - OPTIONS
        if unknown:
            raise ImproperlyConfigured(
                f"{where} has unknown keys {sorted(unknown)} (known: {sorted(OPTIONS)})."
            )
        try:
            path = self.options.get("PATH")
            if path is not None and (not isinstance(path, (str, Path)) or not str(path)):
                raise ImproperlyConfigured(f"PATH must be a directory path, not {path!r}.")
            device = self.options.get("DEVICE", "auto")
            if not isinstance(device, str) or not device:
                raise ImproperlyConfigured(f"DEVICE must be a string like 'auto', not {device!r}.")
            self.candidates = _number(self.options, "CANDIDATES", int, 1, 64)
            temperature = _number(self.options, "TEMPERATURE", float, 0.01, 5.0)
            top_k = _number(self.options, "TOP_K", int, 0, 100_000)
        except ImproperlyConfigured as exc:
            raise ImproperlyConfigured(f"{where}: {exc}") from None
        self.path = Path(path) if path is not None else None
        self.device = device
        self.temperature = 0.9 if temperature is None else temperature
        self.top_k = 40 if top_k is None else top_k
        self.loaded = None
        self.facts = None

    # Loading --------------------------------------------------------------------------------

    def model_path(self) -> Path:
        """The model directory: OPTIONS["PATH"], else the active copy artifact's."""
        from aigc_django.generation.copymodel.model import CopyModelMissing
        from aigc_django.models import ModelArtifact
        from aigc_django.profiles.build import model_dir

        if self.path is not None:
            return self.path
        artifact = (
            ModelArtifact.objects.filter(kind="copy", active=True).order_by("-version").first()
        )
        if artifact is None:
            raise CopyModelMissing(model_dir() / "copy", "no active copy ModelArtifact")
        return Path(artifact.path)

    def load(self) -> None:
        from aigc_django.generation.copymodel.model import load
        from aigc_django.generation.copymodel.quality import CatalogFacts

        loaded = load(self.model_path(), torch_device(self.device))
        self.facts = CatalogFacts(
            {title.lower(): None for title in loaded.titles}, loaded.category_names
        )
        self.loaded = loaded

    def close(self) -> None:
        self.loaded = None
        self.facts = None
        super().close()

    @property
    def model_name(self) -> str:
        return "copy"

    @property
    def model_version(self) -> str:
        return self.loaded.version if self.loaded is not None else ""

    # Generation -----------------------------------------------------------------------------

    def _candidates(self) -> int:
        if self.candidates is not None:
            return self.candidates
        from aigc_django.conf import aigc_settings

        return max(1, int(aigc_settings.GENERATION["CANDIDATES"]))

    @staticmethod
    def featured(brief: Brief) -> Product | None:
        """The product a draft is about, picked by the brief's seed (variants differ)."""
        if not brief.products:
            return None
        return brief.products[random.Random(brief.seed).randrange(len(brief.products))]

    def _unfillable(self, brief: Brief, product: Product | None) -> list[str]:
        missing = []
        if product is None:
            missing += ["{product}", "{price}"]
        elif product.price is None:
            missing.append("{price}")
        if product is None and not brief.categories:
            missing.append("{category}")
        if not brief.brand_name:
            missing.append("{brand}")
        return missing

    def _requests(self, brief: Brief) -> tuple[list, Product | None]:
        from aigc_django.generation.copymodel.quality import PRICE, fact_errors
        from aigc_django.generation.copymodel.sample import Request, row_key
        from aigc_django.generation.copymodel.tokenizer import ANY, SPACE

        tokenizer = self.loaded.tokenizer
        product = self.featured(brief)
        if product is not None:
            category = product.category
        elif brief.categories:
            category = brief.categories[brief.seed % len(brief.categories)][0]
        else:
            category = ANY
        unfillable = self._unfillable(brief, product)
        forbid = [tokenizer.ids[t] for p in unfillable for t in (p, SPACE + p) if tokenizer.has(t)]
        facts = self.facts.with_brief(brief)

        def fill(raw: str) -> str:
            return fill_placeholders(raw, brief, product)

        allowed_names = brief_names(brief)

        def check(raw: str, filled: str) -> list[str]:
            problems = [f"cannot fill {p}" for p in unfillable if p in raw]
            if names := unknown_names(raw, allowed_names):
                # A name learned from another product's description ("by Nora Varga"):
                # a claim the brief cannot back.
                problems.append(f"names {names[0]!r}, which the brief does not")
            if PRICE.search(raw):
                problems.append("a price that is not a placeholder")
            if facts.titles_in(raw):
                problems.append("a product name that is not a placeholder")
            words = filled.lower().split()
            if any(a == b for a, b in itertools.pairwise(words)):
                problems.append("a word twice in a row once filled")
            return problems + fact_errors(filled, facts, brief)

        requests = [
            Request(
                prefix=tokenizer.prefix(brief.segment, category, brief.slot, name),
                limit=int(limit),
                key=row_key(brief.seed, name),
                fill=fill,
                check=check,
                forbid=forbid,
            )
            for name, limit in brief.fields.items()
        ]
        return requests, product

    def fallback(self, brief: Brief, name: str, limit: int, product: Product | None) -> str:
        """Plain catalog facts for a field no candidate could fill (rare)."""
        unfillable = self._unfillable(brief, product)
        options = [
            t for t in FALLBACKS.get(name, DEFAULT_FALLBACK) if not any(p in t for p in unfillable)
        ]
        filled = [fill_placeholders(text, brief, product) for text in options]
        for text in filled:
            if text and len(text) <= limit:
                return text
        text = filled[-1] if filled else ""
        return text[: text.rfind(" ", 0, limit + 1)] if " " in text[: limit + 1] else text[:limit]

    def _generate(self, briefs: list[Brief]) -> list[CopyDraft]:
        from aigc_django.generation.copymodel.sample import choose

        candidates = self._candidates()
        requests, products, owners = [], [], []
        for index, brief in enumerate(briefs):
            made, product = self._requests(brief)
            requests += made
            products.append(product)
            owners += [(index, name) for name in brief.fields]
        chosen: list = [None] * len(requests)
        rounds = [0] * len(requests)
        pending = list(range(len(requests)))
        for round_ in range(ROUNDS):
            if not pending:
                break
            results = choose(
                self.loaded,
                [requests[i] for i in pending],
                candidates,
                self.temperature,
                self.top_k,
                round_,
            )
            for i, result in zip(pending, results, strict=True):
                chosen[i], rounds[i] = result, round_
            pending = [i for i in pending if chosen[i] is None]

        drafts = []
        for index, brief in enumerate(briefs):
            fields, scores, truncated, fallback = {}, {}, [], []
            for i, (owner, name) in enumerate(owners):
                if owner != index:
                    continue
                choice = chosen[i]
                if choice is None:
                    fields[name] = self.fallback(brief, name, requests[i].limit, products[index])
                    fallback.append(name)
                    continue
                fields[name] = choice.text
                scores[name] = round(choice.score, 4)
                if choice.truncated:
                    truncated.append(name)
            notes: dict[str, Any] = {
                "score": round(sum(scores.values()) / len(scores), 4) if scores else None,
                "scores": scores,
                "candidates": candidates,
                "product": products[index].key if products[index] else None,
                "rounds": 1
                + max(
                    (r for (o, _), r in zip(owners, rounds, strict=True) if o == index), default=0
                ),
            }
            if truncated:
                notes["truncated"] = truncated
            if fallback:
                notes["fallback"] = fallback
            drafts.append(CopyDraft(fields, self.provenance(brief, brief.seed), notes))
        return drafts


NAME_WORD = re.compile(r"[A-Z][\w'\u2019-]*")


def brief_names(brief: Brief) -> set[str]:
    """Capitalised words the brief itself holds: product titles, categories, the brand."""
    texts = [p.title for p in brief.products] + [name for _, name in brief.categories]
    texts += [p.category_name for p in brief.products] + [brief.brand_name, brief.segment_name]
    return {word for text in texts for word in NAME_WORD.findall(text or "")} | {"I"}


def unknown_names(raw: str, allowed: set[str]) -> list[str]:
    """Capitalised words inside a sentence (not its first word) that the brief does not hold."""
    found = []
    words = raw.split()
    for index, word in enumerate(words):
        if index == 0 or words[index - 1][-1:] in ".!?:" or "{" in word:
            continue
        match = NAME_WORD.match(word)
        if match and match.group(0) not in allowed:
            found.append(match.group(0))
    return found
