"""Briefs: what a backend is told about one (slot, segment) cell.

A brief holds segment-level facts only (top categories and products, the slot's brief, the
brand voice), never anything about a single visitor. Catalog text is data: backends must
treat titles and descriptions as content to write about, not as instructions.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass, field, replace

# Placeholders the builtin model writes and the service fills from the catalog, so that
# product names, prices and categories in copy are always the catalog's own.
PLACEHOLDERS = ("{product}", "{price}", "{category}", "{brand}")


@dataclass(frozen=True)
class Product:
    """A catalog item as a brief carries it."""

    key: str
    title: str
    category: str
    category_name: str
    price: float | None = None
    description: str = ""
    image_url: str = ""


@dataclass(frozen=True)
class Brief:
    """Everything a copy or image backend may know about one (slot, segment) cell."""

    slot: str
    segment: str
    segment_name: str
    # Maximum length (characters) per copy field, e.g. {"headline": 60, "body": 160, "cta": 24}.
    fields: dict[str, int]
    # Category keys and display names, best first.
    categories: list[tuple[str, str]] = field(default_factory=list)
    products: list[Product] = field(default_factory=list)
    slot_brief: str = ""
    brand_name: str = ""
    brand_voice: str = ""
    # Brand and segment colours as "#rrggbb", used by image backends.
    palette: list[str] = field(default_factory=list)
    language: str = "en"
    seed: int = 0

    def with_seed(self, seed: int) -> Brief:
        return replace(self, seed=seed)

    def as_dict(self) -> dict:
        return asdict(self)

    @property
    def hash(self) -> str:
        """A stable hash of the brief's content (the seed excluded): the provenance key."""
        data = self.as_dict()
        data.pop("seed")
        blob = json.dumps(data, sort_keys=True, ensure_ascii=False, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def image_prompt(self) -> str:
        """A text-to-image prompt for a background that suits the cell (no text in it)."""
        topics = ", ".join(name for _, name in self.categories[:3]) or "products"
        voice = f", {self.brand_voice}" if self.brand_voice else ""
        return (
            f"advertising banner background for {topics}{voice}, clean composition, "
            "soft light, empty space for text, no text, no logo"
        )


def category_name(key: str) -> str:
    """A category key as copy shows it: "running-shoes" -> "Running shoes"."""
    words = key.replace("_", " ").replace("-", " ").strip()
    return words[:1].upper() + words[1:]


def format_price(price: float | None) -> str:
    """A catalog price as copy shows it ("49.90")."""
    return "" if price is None else f"{price:.2f}"


def fill_placeholders(text: str, brief: Brief, product: Product | None = None) -> str:
    """Replace ``{product}``, ``{price}``, ``{category}`` and ``{brand}`` with catalog facts.

    ``product`` defaults to the brief's first product; the category is that product's
    category (or the brief's top category when there is no product).
    """
    product = product or (brief.products[0] if brief.products else None)
    if product is not None:
        category = product.category_name
    else:
        category = brief.categories[0][1] if brief.categories else ""
    values = {
        "{product}": product.title if product else "",
        "{price}": format_price(product.price) if product else "",
        "{brand}": brief.brand_name,
    }
    for placeholder, value in values.items():
        text = text.replace(placeholder, value)
    text = re.sub(
        r"(^|[.!?]\s+)?\{category\}",
        lambda m: m.group(0).replace(
            "{category}", category if m.group(1) is not None else in_sentence(category)
        ),
        text,
    )
    return " ".join(text.split())


def in_sentence(name: str) -> str:
    """A display name as it reads mid-sentence: "Running shoes" -> "running shoes", but
    names whose first word is not plain capitalised ("DVDs", "iPhone cases") are kept."""
    first = name.split(" ", 1)[0]
    if len(first) > 1 and first[0].isupper() and first[1:].islower():
        return name[0].lower() + name[1:]
    return name
