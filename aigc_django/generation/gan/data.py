"""The GAN's training images: the shop's product photos and its approved banner backgrounds.

- Product photos: every catalog item's image (``AIGC["CATALOG"]["FIELDS"]["image"]``), read
  from the project's own storage or static files (never the network), labelled with the
  item's category.
- Approved banner backgrounds: the background each approved ``Variant`` was composed on
  (kept in storage beside its banners), labelled with the segment's top category.

Each image is labelled with its own palette: its three most common colours after a median
cut, most common first. At sampling time the palette comes from the brief (brand and
segment colours), so the generator learns "an image whose main colours are these".
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import torch
from PIL import Image, ImageOps

from aigc_django.generation.gan.model import PALETTE_COLOURS

logger = logging.getLogger("aigc_django.generation")

# Fewer images than this cannot train a GAN worth serving (it would only copy them).
MIN_IMAGES = 16


# Images are kept in memory at this side (a little above the native resolution) so random
# crops of the native size can be taken for augmentation.
def keep_side(resolution: int) -> int:
    return resolution + resolution // 8


class TooFewImages(ValueError):
    """The shop has too few usable images to train the GAN; nothing was changed."""


@dataclass
class TrainingImage:
    image: Image.Image  # RGB
    category: str  # "" when unknown
    source: str  # "product" or "background"


@dataclass
class ImageSet:
    """Training images as tensors, with their labels."""

    images: torch.Tensor  # [n, 3, side, side] in -1..1
    categories: torch.Tensor  # [n] indices, 0 = unknown
    palettes: torch.Tensor  # [n, 3, 3] in -1..1
    vocabulary: list[str]  # category keys; index i + 1 is vocabulary[i]
    sources: dict[str, int] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.images.shape[0])


def dominant_palette(image: Image.Image, colours: int = PALETTE_COLOURS) -> list[tuple]:
    """The image's ``colours`` most common colours (median cut), most common first.

    An image with fewer distinct colours repeats its last one.
    """
    small = image.convert("RGB").resize((32, 32), Image.Resampling.BILINEAR)
    quantised = small.quantize(colors=colours, method=Image.Quantize.MEDIANCUT)
    palette = quantised.getpalette() or []
    counts = sorted(quantised.getcolors() or [], reverse=True)
    found = [tuple(palette[3 * index : 3 * index + 3]) for _, index in counts]
    found = found or [(128, 128, 128)]
    while len(found) < colours:
        found.append(found[-1])
    return found[:colours]


def palette_tensor(colours: list[tuple]) -> torch.Tensor:
    """RGB tuples (0..255) as a ``[len, 3]`` tensor in -1..1."""
    return torch.tensor(colours, dtype=torch.float32) / 127.5 - 1


def square(image: Image.Image, side: int) -> Image.Image:
    """The image's centre square at ``side`` pixels (Lanczos)."""
    return ImageOps.fit(image.convert("RGB"), (side, side), Image.Resampling.LANCZOS)


def _rgb(image: Image.Image) -> Image.Image:
    if image.mode == "RGBA":
        backdrop = Image.new("RGB", image.size, (255, 255, 255))
        backdrop.paste(image, mask=image.getchannel("A"))
        return backdrop
    return image.convert("RGB")


def collect_images() -> list[TrainingImage]:
    """The shop's product photos and approved banner backgrounds (unreadable ones skipped)."""
    from django.core.files.storage import default_storage

    from aigc_django.catalog import get_catalog
    from aigc_django.generation import images
    from aigc_django.models import Variant

    found: list[TrainingImage] = []
    catalog = get_catalog()
    if catalog is not None:
        for item in catalog.items():
            if not item.image_url:
                continue
            picture = images.product_image(item.image_url)
            if picture is not None:
                found.append(TrainingImage(_rgb(picture), item.category, "product"))
    approved = Variant.objects.filter(status=Variant.Status.APPROVED).select_related("segment")
    for variant in approved.iterator(chunk_size=500):
        name = (variant.provenance or {}).get("background") or ""
        if not name:
            continue
        try:
            with default_storage.open(name, "rb") as handle:
                picture = images.open_image(handle.read())
        except (OSError, ValueError) as exc:
            logger.warning("Background %r of variant %s cannot be read: %s", name, variant.pk, exc)
            continue
        if picture is None:
            continue
        top = variant.segment.top_categories or []
        category = str(top[0][0]) if top and top[0] else ""
        found.append(TrainingImage(_rgb(picture), category, "background"))
    return found


def build_image_set(
    pictures: list[TrainingImage], resolution: int, min_images: int = MIN_IMAGES
) -> ImageSet:
    """Tensors for training; ``TooFewImages`` when there are fewer than ``min_images``."""
    if len(pictures) < min_images:
        raise TooFewImages(
            f"The image GAN needs at least {min_images} training images (product images in "
            f"the catalog and approved banner backgrounds); this shop has {len(pictures)}. "
            "The current image model stays in service."
        )
    side = keep_side(resolution)
    vocabulary = sorted({p.category for p in pictures if p.category})
    index = {key: i + 1 for i, key in enumerate(vocabulary)}
    tensors, categories, palettes = [], [], []
    sources: dict[str, int] = {}
    for picture in pictures:
        fitted = square(picture.image, side)
        data = torch.frombuffer(bytearray(fitted.tobytes()), dtype=torch.uint8)
        tensors.append(data.view(side, side, 3).permute(2, 0, 1).float() / 127.5 - 1)
        categories.append(index.get(picture.category, 0))
        palettes.append(palette_tensor(dominant_palette(picture.image)))
        sources[picture.source] = sources.get(picture.source, 0) + 1
    return ImageSet(
        images=torch.stack(tensors),
        categories=torch.tensor(categories, dtype=torch.long),
        palettes=torch.stack(palettes),
        vocabulary=vocabulary,
        sources=sources,
    )
