"""How a banner layout and its conditions become tensors for the layout VAE.

A layout is the boxes of up to seven elements: the logo, the headline, the body, the call
to action (its button) and up to three product images. Each box is stored as its centre,
width and height divided by the banner's width and height (so every number is in 0..1 and
the same layout fits any size of the same shape). Elements a banner does not have are
masked out of the loss.

The condition says what the layout must hold and where it goes: the slot size (aspect and
scale), the content (how many products, whether there is a logo, how long the headline,
body and call to action are) and the segment (its key hashed to one of
:data:`SEGMENT_BUCKETS` buckets; bucket 0 is "unknown" for everyone else).
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import asdict, dataclass

ELEMENTS: tuple[str, ...] = (
    "logo",
    "headline",
    "body",
    "cta",
    "product_0",
    "product_1",
    "product_2",
)
MAX_PRODUCTS = 3
BOX_DIM = 4
TARGET_DIM = len(ELEMENTS) * BOX_DIM
# Numbers in the condition vector besides the segment bucket (see condition_vector).
CONDITION_DIM = 12
SEGMENT_BUCKETS = 32
UNKNOWN_SEGMENT = 0
# Character counts that map to 1.0 in the condition (the default copy field limits).
HEADLINE_CHARS, BODY_CHARS, CTA_CHARS = 60, 160, 24

Box = tuple[int, int, int, int]
NormBox = tuple[float, float, float, float]


def segment_bucket(segment: str | None) -> int:
    """The segment's bucket: 1..SEGMENT_BUCKETS-1 from a hash of its key, 0 for none."""
    if not segment:
        return UNKNOWN_SEGMENT
    digest = hashlib.sha256(str(segment).encode()).digest()
    return 1 + int.from_bytes(digest[:4], "big") % (SEGMENT_BUCKETS - 1)


@dataclass(frozen=True)
class Condition:
    """What a layout is asked for: size, content and segment."""

    width: int
    height: int
    products: int = 0
    logo: bool = False
    headline: int = 0
    body: int = 0
    cta: int = 0
    segment: int = UNKNOWN_SEGMENT

    @classmethod
    def of(
        cls,
        size: tuple[int, int],
        copy: dict[str, str],
        products: int,
        logo: bool,
        segment: str | None,
    ) -> Condition:
        """The condition of a banner: ``copy`` by field name, ``segment`` by key."""

        def chars(name: str) -> int:
            return len(" ".join(str(copy.get(name) or "").split()))

        return cls(
            int(size[0]),
            int(size[1]),
            min(MAX_PRODUCTS, max(0, int(products))),
            bool(logo),
            chars("headline"),
            chars("body"),
            chars("cta"),
            segment_bucket(segment),
        )

    def elements(self) -> list[str]:
        """The elements this content has (the ones a layout must place)."""
        names = ["logo"] if self.logo else []
        names += [n for n, count in (("headline", self.headline), ("body", self.body)) if count]
        names += ["cta"] if self.cta else []
        names += [f"product_{i}" for i in range(self.products)]
        return names

    def as_dict(self) -> dict:
        return asdict(self)


def condition_vector(condition: Condition) -> list[float]:
    """The :data:`CONDITION_DIM` numbers of a condition (the segment goes in separately)."""
    aspect = math.log(condition.width / condition.height) / 2.0
    scale = math.log(min(condition.width, condition.height) / 500.0)
    products = [1.0 if condition.products == n else 0.0 for n in range(MAX_PRODUCTS + 1)]
    return [
        aspect,
        scale,
        *products,
        1.0 if condition.logo else 0.0,
        min(2.0, condition.headline / HEADLINE_CHARS),
        min(2.0, condition.body / BODY_CHARS),
        min(2.0, condition.cta / CTA_CHARS),
        1.0 if condition.body else 0.0,
        1.0 if condition.cta else 0.0,
    ]


def normalize(boxes: dict[str, Box], size: tuple[int, int]) -> dict[str, NormBox]:
    """Pixel boxes (x0, y0, x1, y1) as (cx, cy, w, h) fractions of the banner."""
    width, height = size
    found = {}
    for name in ELEMENTS:
        if name in boxes:
            x0, y0, x1, y1 = boxes[name]
            found[name] = (
                (x0 + x1) / 2 / width,
                (y0 + y1) / 2 / height,
                (x1 - x0) / width,
                (y1 - y0) / height,
            )
    return found


def to_pixels(box: NormBox, size: tuple[int, int]) -> Box:
    """A (cx, cy, w, h) fraction box as pixels (x0, y0, x1, y1), at least 1 px each way."""
    cx, cy, w, h = box
    width, height = size
    bw, bh = max(1.0, w * width), max(1.0, h * height)
    x0, y0 = round(cx * width - bw / 2), round(cy * height - bh / 2)
    return (x0, y0, x0 + max(1, round(bw)), y0 + max(1, round(bh)))


def target_vector(boxes: dict[str, NormBox]) -> tuple[list[float], list[float]]:
    """(values, mask) of a normalized layout, :data:`TARGET_DIM` numbers each."""
    values: list[float] = []
    mask: list[float] = []
    for name in ELEMENTS:
        box = boxes.get(name)
        values += list(box) if box is not None else [0.0] * BOX_DIM
        mask += [1.0 if box is not None else 0.0] * BOX_DIM
    return values, mask


def from_vector(values: list[float], names: list[str]) -> dict[str, NormBox]:
    """The boxes of ``names`` out of a decoded :data:`TARGET_DIM` vector."""
    found = {}
    for index, name in enumerate(ELEMENTS):
        if name in names:
            start = index * BOX_DIM
            found[name] = tuple(float(v) for v in values[start : start + BOX_DIM])
    return found  # type: ignore[return-value]
