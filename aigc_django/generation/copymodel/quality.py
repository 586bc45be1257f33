"""Quality measures of generated copy, shared by the sampler, the tests and the benchmarks.

- :func:`fact_errors`: every product, price and category the copy names exists in the
  catalog and matches the brief (a price is the price of a product the copy names);
- :func:`distinct_n`: distinct n-grams over all n-grams of a set of texts (variety);
- :func:`segment_relevance`: the share of texts that name any of a segment's top categories
  or products.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from aigc_django.generation.briefs import PLACEHOLDERS, Brief, format_price

# Prices as copy shows them ("49.90", "$49.90", "49,90 €").
PRICE = re.compile(r"(?<![\w.,])[$€£]?\s?(\d+[.,]\d{2})(?![\d])")
WORD = re.compile(r"[^\W_]+(?:['\u2019\-][^\W_]+)*")


def _alternation(names: Iterable[str]) -> re.Pattern | None:
    ordered = sorted({n for n in names if n and n.strip()}, key=len, reverse=True)
    if not ordered:
        return None
    body = "|".join(re.escape(n) for n in ordered)
    return re.compile(r"(?<![\w-])(?:" + body + r")(?![\w-])", re.IGNORECASE)


class CatalogFacts:
    """Titles (with prices, where known) and category names of a catalog.

    ``prices`` maps lower-cased titles to prices (None when unknown); ``category_names`` maps
    category keys to display names. :meth:`with_brief` adds a brief's products cheaply (the
    catalog's patterns are compiled once).
    """

    def __init__(
        self,
        prices: Mapping[str, float | None] | None = None,
        category_names: Mapping[str, str] | None = None,
        _title_patterns: tuple[re.Pattern, ...] | None = None,
    ) -> None:
        self.prices = dict(prices or {})
        self.category_names = dict(category_names or {})
        if _title_patterns is None:
            pattern = _alternation(self.prices)
            _title_patterns = (pattern,) if pattern else ()
        self._titles = _title_patterns
        self._categories = _alternation(self.category_names.values())

    @classmethod
    def from_items(cls, items: Iterable) -> CatalogFacts:
        """From catalog items (anything with ``title``, ``price`` and ``category``)."""
        from aigc_django.generation.briefs import category_name

        prices: dict[str, float | None] = {}
        names: dict[str, str] = {}
        for item in items:
            prices[item.title.lower()] = item.price
            names[item.category] = category_name(item.category)
        return cls(prices, names)

    @classmethod
    def from_catalog(cls) -> CatalogFacts:
        """From the configured catalog (``AIGC["CATALOG"]``)."""
        from aigc_django.catalog import get_catalog

        catalog = get_catalog()
        return cls.from_items(catalog.items() if catalog is not None else [])

    def with_brief(self, brief: Brief) -> CatalogFacts:
        """These facts plus the brief's own products (their prices win) and categories."""
        prices = dict(self.prices)
        names = dict(self.category_names)
        new = []
        for product in brief.products:
            title = product.title.lower()
            if title not in prices:
                new.append(title)
            prices[title] = product.price
            names.setdefault(product.category, product.category_name)
        for key, name in brief.categories:
            names.setdefault(key, name)
        extra = _alternation(new)
        patterns = self._titles + ((extra,) if extra else ())
        return CatalogFacts(prices, names, _title_patterns=patterns)

    def titles_in(self, text: str) -> list[str]:
        return [m.group(0).lower() for p in self._titles for m in p.finditer(text)]

    def categories_in(self, text: str) -> list[str]:
        if self._categories is None:
            return []
        return [m.group(0).lower() for m in self._categories.finditer(text)]

    def without_titles(self, text: str) -> str:
        for pattern in self._titles:
            text = pattern.sub(" ", text)
        return text


def _as_text(copy: Mapping[str, str] | str) -> str:
    return copy if isinstance(copy, str) else "\n".join(str(v) for v in copy.values())


def fact_errors(
    copy: Mapping[str, str] | str, facts: CatalogFacts, brief: Brief | None = None
) -> list[str]:
    """What the copy gets wrong about the catalog (an empty list when nothing).

    - a placeholder or brace left unfilled;
    - a price that is not the catalog price of a product the copy names (any of the brief's
      products when the copy names none);
    - with a brief: a product that is not one of the brief's products, or a category name
      that is neither among the brief's categories nor the category of one of its products.
    """
    text = _as_text(copy)
    errors = []
    for placeholder in PLACEHOLDERS:
        if placeholder in text:
            errors.append(f"unfilled placeholder {placeholder}")
    if "{" in text or "}" in text:
        errors.append("a brace left in the copy")
    named = facts.titles_in(text)
    if brief is not None:
        allowed = {p.title.lower() for p in brief.products}
        errors += [f"names {t!r}, not a product of the brief" for t in named if t not in allowed]
    rest = facts.without_titles(text)
    if named:
        prices = {format_price(facts.prices.get(t)) for t in named} - {""}
    elif brief is not None:
        prices = {format_price(p.price) for p in brief.products} - {""}
    else:
        prices = set()
    for match in PRICE.finditer(rest):
        value = match.group(1).replace(",", ".")
        if value not in prices:
            errors.append(f"price {value} is not the price of a product it names")
    if brief is not None:
        allowed_categories = {name.lower() for _, name in brief.categories}
        allowed_categories |= {p.category_name.lower() for p in brief.products}
        for name in facts.categories_in(rest):
            if name not in allowed_categories:
                errors.append(f"names category {name!r}, not one of the brief's")
    return errors


def distinct_n(texts: Iterable[str], n: int = 2) -> float:
    """Distinct word n-grams over all word n-grams of the texts (0 when there are none)."""
    grams = []
    for text in texts:
        words = [w.lower() for w in WORD.findall(text)]
        grams += [tuple(words[i : i + n]) for i in range(len(words) - n + 1)]
    return len(set(grams)) / len(grams) if grams else 0.0


def segment_relevance(texts: Iterable[str], names: Iterable[str]) -> float:
    """The share of texts that name any of ``names`` (a segment's top categories and
    products), as whole words in any case; 0 for no texts."""
    pattern = _alternation(names)
    texts = list(texts)
    if not texts or pattern is None:
        return 0.0
    return sum(1 for text in texts if pattern.search(text)) / len(texts)
