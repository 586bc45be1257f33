"""Training examples for the copy model, built from the shop's own text.

Sources, each example conditioned on (segment, category, slot, field) control tokens:

- catalog items: descriptions split into sentences (field ``body``) with the item's own
  title, price, category name and the brand replaced by placeholders, and titles as they are
  (field ``title``, never sampled: it teaches the shop's words);
- category names ("running-shoes" -> "Running shoes", field ``category``);
- slot briefs (field ``brief``, conditioned on the slot);
- approved variants' copy, facts replaced by placeholders, weighted ``APPROVED_WEIGHT``, more
  when visitors clicked it (see :func:`approved_weight`);
- the packaged starter set (``starter.txt``): generic headlines, bodies and calls to action.

Sentences that name another product or a price that is not the item's own are left out, so
the model never learns to write a fact that a placeholder does not stand for.

An example about a product or category is labelled with one of the segments that have the
category (or the product) among their tops, or with ``everyone``, chosen with a fixed seed.
"""

from __future__ import annotations

import itertools
import random
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from aigc_django.delivery.bandit import posterior_mean
from aigc_django.generation.briefs import PLACEHOLDERS, category_name, format_price
from aigc_django.generation.copymodel.tokenizer import ANY, EVERYONE

APPROVED_WEIGHT = 4
# Approved copy that visitors clicked gains up to this much weight: all of it at
# FULL_BONUS_CLICKS clicks and twice its slot's click-through.
MAX_CLICK_BONUS = 8
FULL_BONUS_CLICKS = 20
# Extra copies of each starter line, each under a random segment, category and slot.
GENERIC_COPIES = 2
STARTER_PATH = Path(__file__).with_name("starter.txt")
# Fields the model writes; the others only teach it the shop's words.
COPY_FIELDS = ("headline", "body", "cta")
MAX_ITEMS = 3000
MAX_SENTENCE_CHARS = 200
MONEY = re.compile(r"(?:[$€£]\s?)?(?<![\d.,])\d+(?:[.,]\d{1,2})?(?:\s?(?:[$€£]|EUR|USD|GBP))?")
SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


@dataclass(frozen=True)
class Example:
    """One training text and the conditions it was written under."""

    text: str
    field: str
    segment: str = EVERYONE
    category: str = ANY
    slot: str = ANY
    weight: int = 1


@dataclass
class Corpus:
    examples: list[Example]
    # Catalog facts the sampler must not write literally (only through placeholders).
    titles: list[str] = field(default_factory=list)
    category_names: dict[str, str] = field(default_factory=dict)
    segments: list[str] = field(default_factory=list)
    slots: list[str] = field(default_factory=list)
    sources: dict[str, int] = field(default_factory=dict)

    @property
    def categories(self) -> list[str]:
        return sorted(self.category_names)


def read_starter(path: Path = STARTER_PATH) -> list[tuple[str, str]]:
    """(field, text) pairs of the packaged starter set."""
    pairs = []
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, _, text = line.partition("|")
        if text.strip():
            pairs.append((name.strip(), text.strip()))
    return pairs


def clean(text: str) -> str:
    """One line of plain text; braces become parentheses so no text fakes a placeholder."""
    return " ".join(str(text).replace("{", "(").replace("}", ")").split())


def _words(value: str) -> re.Pattern:
    return re.compile(r"(?<![\w-])" + re.escape(value) + r"(?![\w-])", re.IGNORECASE)


def _price_forms(price: float | None) -> list[str]:
    if price is None:
        return []
    forms = {format_price(price), f"{price:g}", f"{price:.2f}".replace(".", ",")}
    if float(price).is_integer():
        forms.add(str(int(price)))
    return sorted(forms, key=len, reverse=True)


class Masker:
    """Replaces catalog facts in text by placeholders, or says the text cannot be used."""

    def __init__(self, titles: Iterable[str], brand: str = "") -> None:
        ordered = sorted({t for t in titles if t.strip()}, key=len, reverse=True)
        self.titles = (
            re.compile(
                r"(?<![\w-])(?:" + "|".join(re.escape(t) for t in ordered) + r")(?![\w-])",
                re.IGNORECASE,
            )
            if ordered
            else None
        )
        self.brand = _words(brand) if brand.strip() else None

    def mask(
        self,
        text: str,
        title: str = "",
        price: float | None = None,
        category_name: str = "",
        any_title: bool = False,
        prices: set[str] | None = None,
    ) -> str | None:
        """``text`` with facts as placeholders; None when it names a fact it may not.

        ``title``/``price``/``category_name``: the item's own facts. ``any_title``: every
        catalog title becomes ``{product}`` (approved copy, where the product is the one the
        copy was written about); ``prices``: prices (as formatted) that may become ``{price}``.
        """
        text = clean(text)
        if title.strip():
            text = _words(title).sub("{product}", text)
        if self.titles is not None:
            if any_title:
                text = self.titles.sub("{product}", text)
            elif self.titles.search(text):
                return None
        for form in _price_forms(price):
            text = re.sub(
                r"(?:[$€£]\s?)?(?<![\d.,])" + re.escape(form) + r"(?![\d])", "{price}", text
            )
        if prices:
            for match in list(MONEY.finditer(text))[::-1]:
                digits = re.sub(r"[^\d.,]", "", match.group(0)).replace(",", ".")
                if digits in prices:
                    text = text[: match.start()] + "{price}" + text[match.end() :]
        if re.search(r"\d+[.,]\d{2}\b|[$€£]\s?\d", text):
            return None  # a price that is not the item's own
        if category_name.strip():
            text = _words(category_name).sub("{category}", text)
        if self.brand is not None:
            text = self.brand.sub("{brand}", text)
        text = " ".join(text.split())
        return text or None


def sentences(text: str) -> list[str]:
    """Sentences of a description, and each pair of neighbours that stays short."""
    parts = [s.strip() for s in SENTENCE_END.split(clean(text)) if s.strip()]
    out = [s for s in parts if len(s) <= MAX_SENTENCE_CHARS]
    for a, b in itertools.pairwise(parts):
        if len(a) + len(b) + 1 <= 160:
            out.append(f"{a} {b}")
    return out


def build_corpus(seed: int = 0, max_items: int = MAX_ITEMS) -> Corpus:
    """Examples from the configured catalog, segments, slots and approved variants."""
    from aigc_django.catalog import get_catalog
    from aigc_django.conf import aigc_settings
    from aigc_django.models import Segment, Slot, Variant

    rng = random.Random(seed)
    brand = str(aigc_settings.BRAND.get("NAME") or "")
    catalog = get_catalog()
    items = list(catalog.items()) if catalog is not None else []
    if len(items) > max_items:
        items = random.Random(seed).sample(items, max_items)
    segments = list(Segment.objects.filter(active=True))
    slots = list(Slot.objects.all())

    by_category: dict[str, list[str]] = {}
    by_item: dict[str, list[str]] = {}
    for segment in segments:
        if segment.key == EVERYONE:
            continue
        for entry in segment.top_categories or []:
            if entry:
                by_category.setdefault(str(entry[0]), []).append(segment.key)
        for key in segment.top_items or []:
            by_item.setdefault(str(key), []).append(segment.key)

    def label(category: str, item: str = "") -> str:
        choices = sorted(set(by_category.get(category, []) + by_item.get(item, [])))
        return rng.choice([*choices, EVERYONE])

    masker = Masker((item.title for item in items), brand)
    category_names = {item.category: category_name(item.category) for item in items}
    for segment in segments:
        for entry in segment.top_categories or []:
            if entry:
                category_names.setdefault(str(entry[0]), category_name(str(entry[0])))
    examples: list[Example] = []
    sources = {"items": len(items)}

    for item in items:
        name = category_names[item.category]
        examples.append(
            Example(clean(item.title), "title", label(item.category, item.key), item.category)
        )
        for sentence in sentences(item.description):
            text = masker.mask(sentence, item.title, item.price, name)
            if text:
                segment = label(item.category, item.key)
                examples.append(Example(text, "body", segment, item.category))
    sources["item examples"] = len(examples)

    for key, name in sorted(category_names.items()):
        examples.append(Example(name, "category", label(key), key))
    for slot in slots:
        for sentence in sentences(slot.brief):
            text = masker.mask(sentence)
            if text:
                examples.append(Example(text, "brief", EVERYONE, ANY, slot.key))

    all_prices = {format_price(item.price) for item in items if item.price is not None}
    approved = list(
        Variant.objects.filter(status=Variant.Status.APPROVED).select_related("segment", "slot")
    )
    slot_totals: dict[int, list[int]] = {}
    for variant in approved:
        totals = slot_totals.setdefault(variant.slot_id, [0, 0])
        totals[0] += variant.impressions
        totals[1] += min(variant.clicks, variant.impressions)
    count = clicked = 0
    for variant in approved:
        weight = approved_weight(
            variant.impressions, variant.clicks, posterior_mean(*slot_totals[variant.slot_id])
        )
        clicked += weight > APPROVED_WEIGHT
        tops = [str(e[0]) for e in variant.segment.top_categories or [] if e]
        category = tops[0] if tops else ANY
        for name, text in (variant.copy or {}).items():
            if not isinstance(text, str) or not text.strip():
                continue
            masked = masker.mask(text, any_title=True, prices=all_prices)
            if masked is None:
                continue
            for cat_key, cat_name in category_names.items():
                if _words(cat_name).search(masked):
                    masked = _words(cat_name).sub("{category}", masked)
                    category = cat_key
            examples.append(
                Example(
                    masked,
                    str(name),
                    variant.segment.key,
                    category,
                    variant.slot.key,
                    weight,
                )
            )
            count += 1
    sources["approved copy"] = count
    sources["clicked variants"] = clicked

    segment_keys = sorted({s.key for s in segments} | {EVERYONE})
    categories = sorted(category_names) or [ANY]
    slot_keys = sorted(s.key for s in slots) or [ANY]
    starter = read_starter()
    for name, text in starter:
        examples.append(Example(text, name))
        # Again under random conditions: generic lines suit every segment, category and slot.
        for _ in range(GENERIC_COPIES):
            examples.append(
                Example(
                    text,
                    name,
                    rng.choice(segment_keys),
                    rng.choice(categories),
                    rng.choice(slot_keys),
                )
            )
    sources["starter"] = len(starter)

    return Corpus(
        examples=examples,
        titles=sorted({item.title for item in items if item.title.strip()}),
        category_names=category_names,
        segments=segment_keys,
        slots=sorted(s.key for s in slots),
        sources=sources,
    )


def approved_weight(impressions: int, clicks: int, slot_click_through: float) -> int:
    """The training weight of an approved variant's copy.

    ``APPROVED_WEIGHT`` for copy nobody clicked yet, plus a bonus of up to
    ``MAX_CLICK_BONUS`` that grows with the clicks (full at ``FULL_BONUS_CLICKS``: a click or
    two is noise) and with the variant's posterior mean click-through, Beta(1 + clicks,
    1 + impressions - clicks), over its slot's (``slot_click_through``; full at twice).
    Copy clicked at its slot's usual rate gets half the bonus.
    """
    clicks = min(max(int(clicks), 0), max(int(impressions), 0))
    if clicks == 0:
        return APPROVED_WEIGHT
    confidence = min(clicks, FULL_BONUS_CLICKS) / FULL_BONUS_CLICKS
    lift = posterior_mean(impressions, clicks) / max(slot_click_through, 1e-9)
    return APPROVED_WEIGHT + round(MAX_CLICK_BONUS * confidence * min(lift, 2.0) / 2.0)


def placeholders_in(text: str) -> list[str]:
    return [p for p in PLACEHOLDERS if p in text]
