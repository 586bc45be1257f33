"""``manage.py seed_catalog``: fill the shop with a deterministic catalog and product images.

Idempotent: products are keyed by SKU, so running it again updates the same rows and keeps
their images. The same ``--seed`` always gives the same catalog, and product n of a category
does not depend on ``--products``, so a larger run extends a smaller one.
"""

import itertools
import math
import random
from decimal import Decimal
from io import BytesIO
from typing import Any

from django.core.files.base import ContentFile
from django.core.management.base import BaseCommand, CommandError, CommandParser
from PIL import Image, ImageDraw, ImageFont

from shop.catalog_data import (
    AUTHOR_FIRST,
    AUTHOR_LAST,
    BOOK_GENRES,
    CATEGORIES,
    CategoryWords,
)
from shop.models import Category, Product

IMAGE_SIZE = 600
Colour = tuple[int, int, int]


def hex_to_rgb(value: str) -> Colour:
    value = value.lstrip("#")
    return int(value[0:2], 16), int(value[2:4], 16), int(value[4:6], 16)


def mix(a: Colour, b: Colour, amount: float) -> Colour:
    return (
        round(a[0] + (b[0] - a[0]) * amount),
        round(a[1] + (b[1] - a[1]) * amount),
        round(a[2] + (b[2] - a[2]) * amount),
    )


def product_names(words: CategoryWords, seed: int) -> list[str]:
    """Every name the category's word lists allow, in a fixed shuffled order."""
    names = [" ".join(parts) for parts in itertools.product(*words.name_parts)]
    random.Random(f"{seed}:{words.slug}:names").shuffle(names)
    return names


def describe(name: str, words: CategoryWords, rng: random.Random) -> str:
    first, second = rng.sample(words.features, 2)
    use = rng.choice(words.uses)
    closing = rng.choice(words.closings)
    if words.slug == "books":
        author = f"{rng.choice(AUTHOR_FIRST)} {rng.choice(AUTHOR_LAST)}"
        genre = rng.choice(BOOK_GENRES)
        return (
            f"{name} is a {genre} by {author}, with {first} and {second}. "
            f"Just right for {use}. {closing}"
        )
    return f"The {name} comes with {first} and {second}. Made for {use}. {closing}"


def price(words: CategoryWords, rng: random.Random) -> Decimal:
    low, high = words.price_range
    return Decimal(f"{rng.randint(low, high)}.{rng.choice(('00', '49', '95', '99'))}")


def font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    # Pillow's bundled font: no system fonts and no downloads needed.
    return ImageFont.load_default(size=size)


def wrap(draw: ImageDraw.ImageDraw, text: str, face: Any, width: int) -> list[str]:
    lines: list[str] = []
    for word in text.split():
        candidate = f"{lines[-1]} {word}" if lines else word
        if lines and draw.textlength(candidate, font=face) <= width:
            lines[-1] = candidate
        else:
            lines.append(word)
    return lines


def shape_points(
    shape: str, cx: float, cy: float, r: float, turn: float
) -> list[tuple[float, float]]:
    """Corner points of a polygon shape, rotated by ``turn`` radians."""
    if shape == "triangle":
        corners, radii = 3, [r]
    elif shape == "star":
        corners, radii = 10, [r, r * 0.45]
    else:  # "hexagon"
        corners, radii = 6, [r]
    points = []
    for i in range(corners):
        angle = turn + 2 * math.pi * i / corners - math.pi / 2
        radius = radii[i % len(radii)]
        points.append((cx + radius * math.cos(angle), cy + radius * math.sin(angle)))
    return points


def draw_product_image(name: str, category: CategoryWords, rng: random.Random) -> bytes:
    """A square JPEG: the category's colour as a gradient, a shape, and the product's name."""
    base = hex_to_rgb(category.colour)
    top, bottom = mix(base, (255, 255, 255), 0.35), mix(base, (0, 0, 0), 0.35)
    image = Image.new("RGB", (IMAGE_SIZE, IMAGE_SIZE))
    draw = ImageDraw.Draw(image)
    for y in range(IMAGE_SIZE):
        draw.line([(0, y), (IMAGE_SIZE, y)], fill=mix(top, bottom, y / (IMAGE_SIZE - 1)))

    overlay = Image.new("RGBA", image.size, (0, 0, 0, 0))
    shapes = ImageDraw.Draw(overlay)
    cx = IMAGE_SIZE * rng.uniform(0.38, 0.62)
    cy = IMAGE_SIZE * rng.uniform(0.30, 0.42)
    r = IMAGE_SIZE * rng.uniform(0.20, 0.27)
    light = (255, 255, 255, 150)
    # A soft halo behind the shape.
    shapes.ellipse((cx - r * 1.5, cy - r * 1.5, cx + r * 1.5, cy + r * 1.5), fill=(*top, 90))
    if category.shape == "circle":
        shapes.ellipse((cx - r, cy - r, cx + r, cy + r), fill=light)
        shapes.ellipse(
            (cx - r * 0.55, cy - r * 0.55, cx + r * 0.55, cy + r * 0.55), fill=(*base, 120)
        )
    elif category.shape == "ellipse":
        shapes.ellipse((cx - r * 1.3, cy - r * 0.55, cx + r * 1.3, cy + r * 0.55), fill=light)
    elif category.shape == "rectangle":
        shapes.rounded_rectangle(
            (cx - r * 0.75, cy - r, cx + r * 0.75, cy + r), r * 0.12, fill=light
        )
        shapes.rectangle((cx - r * 0.75, cy - r, cx - r * 0.6, cy + r), fill=(*bottom, 110))
    else:
        shapes.polygon(shape_points(category.shape, cx, cy, r, rng.uniform(-0.3, 0.3)), fill=light)
    image = Image.alpha_composite(image.convert("RGBA"), overlay)

    draw = ImageDraw.Draw(image)
    label = font(26)
    draw.text((32, 28), category.name.upper(), font=label, fill=(255, 255, 255, 230))
    for size in (48, 42, 36, 30):
        face = font(size)
        lines = wrap(draw, name, face, IMAGE_SIZE - 64)
        if len(lines) <= 3:
            break
    line_height = round(size * 1.2)
    band_top = IMAGE_SIZE - 40 - line_height * len(lines) - 24
    band = Image.new("RGBA", image.size, (0, 0, 0, 0))
    ImageDraw.Draw(band).rectangle((0, band_top, IMAGE_SIZE, IMAGE_SIZE), fill=(*bottom, 170))
    image = Image.alpha_composite(image, band)
    draw = ImageDraw.Draw(image)
    for index, line in enumerate(lines):
        y = band_top + 24 + index * line_height
        draw.text((32, y), line, font=face, fill=(255, 255, 255, 255))

    output = BytesIO()
    image.convert("RGB").save(output, "JPEG", quality=88, optimize=True)
    return output.getvalue()


class Command(BaseCommand):
    help = (
        "Create or update a demo catalog: categories, products with names, descriptions and "
        "prices from word lists (fixed seed), and product images drawn with Pillow."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--products",
            type=int,
            default=48,
            help="How many products, spread evenly over the categories (default 48).",
        )
        parser.add_argument(
            "--seed", type=int, default=7, help="Random seed; the same seed, the same catalog."
        )
        parser.add_argument(
            "--redraw-images",
            action="store_true",
            help="Draw every product image again, even those that exist.",
        )

    def handle(
        self, *args: Any, products: int, seed: int, redraw_images: bool, **options: Any
    ) -> None:
        if products < 1:
            raise CommandError("--products must be at least 1.")
        per_category = {words.slug: 0 for words in CATEGORIES}
        for index in range(products):
            per_category[CATEGORIES[index % len(CATEGORIES)].slug] += 1
        names = {words.slug: product_names(words, seed) for words in CATEGORIES}
        for words in CATEGORIES:
            if per_category[words.slug] > len(names[words.slug]):
                raise CommandError(
                    f"The {words.name} word lists make only {len(names[words.slug])} distinct "
                    f"names; ask for at most {len(names[words.slug]) * len(CATEGORIES)} products."
                )

        created = updated = drawn = 0
        done = 0
        for words in CATEGORIES:
            category, was_created = Category.objects.update_or_create(
                slug=words.slug, defaults={"name": words.name, "colour": words.colour}
            )
            self.stdout.write(
                f"Category {category.name} ({category.slug}): "
                f"{'created' if was_created else 'updated'}"
            )
            rng = random.Random(f"{seed}:{words.slug}:details")
            for number in range(1, per_category[words.slug] + 1):
                name = names[words.slug][number - 1]
                sku = f"{words.slug[:3].upper()}-{number:03d}"
                product, was_created = Product.objects.update_or_create(
                    sku=sku,
                    defaults={
                        "name": name,
                        "description": describe(name, words, rng),
                        "price": price(words, rng),
                        "category": category,
                    },
                )
                image_rng = random.Random(f"{seed}:{sku}:image")
                image_note = "image kept"
                if (
                    redraw_images
                    or not product.image
                    or not product.image.storage.exists(product.image.name)
                ):
                    self.save_image(product, draw_product_image(name, words, image_rng))
                    image_note = "image drawn"
                    drawn += 1
                created += was_created
                updated += not was_created
                done += 1
                self.stdout.write(
                    f"  [{done:>3}/{products}] {sku} {name}: "
                    f"{'created' if was_created else 'updated'}, {image_note}"
                )
        self.stdout.write(
            self.style.SUCCESS(
                f"Catalog ready: {created} products created, {updated} updated, "
                f"{drawn} images drawn, {Category.objects.count()} categories."
            )
        )

    def save_image(self, product: Product, data: bytes) -> None:
        storage = product.image.storage
        path = f"products/{product.sku}.jpg"
        # Replace the file in place instead of letting the storage pick a new name.
        if storage.exists(path):
            storage.delete(path)
        if product.image and product.image.name != path and storage.exists(product.image.name):
            storage.delete(product.image.name)
        product.image.save(f"{product.sku}.jpg", ContentFile(data), save=True)
