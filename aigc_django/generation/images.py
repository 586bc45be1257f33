"""Image helpers: safe opening, catalog product images, encoded renditions and ``srcset``.

Nothing here raises on bad input: a broken, missing or oversized image is logged and read as
``None``, so that one bad catalog picture never fails a generation job. Nothing here fetches
the network either: catalog URLs resolve to the project's own storage, static files or local
paths.
"""

from __future__ import annotations

import io
import logging
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from PIL import Image, ImageOps

logger = logging.getLogger(__name__)

# Images with more pixels than this are refused before decoding (decompression bombs).
MAX_PIXELS = 40_000_000
# Decoded images are shrunk to at most this many pixels on their longer side: banners never
# need more, and it bounds the memory and the time of every later step.
MAX_SIDE = 2048
# Formats a catalog picture may have; anything else is refused unread.
FORMATS = ("PNG", "JPEG", "WEBP", "GIF", "BMP", "TIFF")
# File extension per Pillow format name.
EXTENSIONS = {"WEBP": "webp", "JPEG": "jpg", "PNG": "png", "AVIF": "avif", "GIF": "gif"}


def open_image(source: Any, max_side: int = MAX_SIDE) -> Image.Image | None:
    """A decoded image from a path, bytes or a binary file, or ``None`` when unusable.

    The result is fully loaded (the file can be closed), turned upright by its EXIF
    orientation, shrunk to ``max_side`` on its longer side, and in mode ``RGBA`` when it has
    any transparency or ``RGB`` otherwise. Broken data, a missing file, an unknown format or
    more than :data:`MAX_PIXELS` pixels give ``None`` and a logged warning, never an error.
    """
    label = _label(source)
    try:
        if isinstance(source, bytes | bytearray | memoryview):
            fp: Any = io.BytesIO(bytes(source))
        elif isinstance(source, str | os.PathLike):
            fp = Path(source)
        else:
            fp = source
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(fp, formats=FORMATS) as image:
                width, height = image.size
                if width < 1 or height < 1 or width * height > MAX_PIXELS:
                    logger.warning(
                        "Image %s refused: %dx%d pixels (at most %d allowed).",
                        label,
                        width,
                        height,
                        MAX_PIXELS,
                    )
                    return None
                if image.format == "JPEG" and max(width, height) > 2 * max_side:
                    # Decode JPEGs at a reduced scale straight away: much faster.
                    image.draft("RGB", (max_side, max_side))
                image.load()
                result = _normalise(image, max_side)
    except (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError) as exc:
        logger.warning("Image %s cannot be read: %s", label, exc)
        return None
    except (Image.DecompressionBombWarning, MemoryError) as exc:
        logger.warning("Image %s refused: %s", label, exc)
        return None
    return result


def _normalise(image: Image.Image, max_side: int) -> Image.Image:
    image = ImageOps.exif_transpose(image) or image
    has_alpha = image.mode in ("RGBA", "LA", "PA") or (
        image.mode == "P" and "transparency" in image.info
    )
    if image.mode == "RGBa":
        has_alpha = True
    image = image.convert("RGBA" if has_alpha else "RGB")
    if max(image.size) > max_side:
        image.thumbnail((max_side, max_side), Image.Resampling.LANCZOS, reducing_gap=3.0)
    if has_alpha and image.getchannel("A").getextrema()[0] == 255:
        image = image.convert("RGB")  # an alpha channel that is fully opaque
    return image


def _label(source: Any) -> str:
    if isinstance(source, str | os.PathLike):
        return repr(str(source))
    if isinstance(source, bytes | bytearray | memoryview):
        return f"<{len(source)} bytes>"
    return repr(getattr(source, "name", type(source).__name__))


def product_image(image_url: str) -> Image.Image | None:
    """The picture behind a catalog image URL, read from this project's own files.

    ``MEDIA_URL``-relative URLs (and bare storage names) are read from ``default_storage``,
    ``STATIC_URL``-relative ones through the staticfiles finders (then ``STATIC_ROOT``),
    ``file://`` URLs and absolute paths from the local disk. The network is never used: an
    ``http(s)`` URL is resolved only when it lies under an absolute ``MEDIA_URL`` or
    ``STATIC_URL`` or names one of ``ALLOWED_HOSTS``; any other gives ``None``.
    """
    from django.conf import settings

    if not image_url or not isinstance(image_url, str):
        return None
    url = image_url.strip()
    media_url = settings.MEDIA_URL or ""
    static_url = settings.STATIC_URL or ""
    for prefix, opener in ((media_url, _open_media), (static_url, _open_static)):
        if prefix and prefix != "/" and url.startswith(prefix):
            return opener(unquote(url[len(prefix) :]), image_url)
    parts = urlsplit(url)
    if parts.scheme in ("http", "https"):
        if not _own_host(parts.hostname or "", settings.ALLOWED_HOSTS):
            logger.info("Image %r is on another host: not fetched.", image_url)
            return None
        path = parts.path
        for prefix, opener in ((media_url, _open_media), (static_url, _open_static)):
            local = urlsplit(prefix).path if prefix else ""
            if local and local != "/" and path.startswith(local):
                return opener(unquote(path[len(local) :]), image_url)
        logger.info("Image %r is outside MEDIA_URL and STATIC_URL: not fetched.", image_url)
        return None
    if parts.scheme == "file":
        return _open_path(unquote(parts.path), image_url)
    if parts.scheme or parts.netloc:
        logger.info("Image %r has an unsupported scheme.", image_url)
        return None
    if os.path.isabs(url):
        return _open_path(url, image_url)
    return _open_media(unquote(url), image_url)


def _own_host(host: str, allowed_hosts: list[str]) -> bool:
    host = host.lower().rstrip(".")
    for pattern in allowed_hosts:
        pattern = pattern.lower()
        if pattern == "*" or not pattern:
            continue  # "any host" does not make every host this site
        if pattern.startswith("."):
            if host == pattern[1:] or host.endswith(pattern):
                return True
        elif host == pattern:
            return True
    return False


def _open_media(name: str, url: str) -> Image.Image | None:
    from django.core.exceptions import SuspiciousFileOperation
    from django.core.files.storage import default_storage

    try:
        with default_storage.open(name, "rb") as fh:
            return open_image(fh)
    except (OSError, SuspiciousFileOperation, ValueError) as exc:
        logger.warning("Image %r cannot be opened from storage: %s", url, exc)
        return None


def _open_static(name: str, url: str) -> Image.Image | None:
    from django.conf import settings
    from django.contrib.staticfiles import finders
    from django.core.exceptions import SuspiciousFileOperation

    try:
        path = finders.find(name)
        if not path and settings.STATIC_ROOT:
            from django.utils._os import safe_join

            candidate = safe_join(settings.STATIC_ROOT, name)
            path = candidate if os.path.isfile(candidate) else None
    except (SuspiciousFileOperation, ValueError) as exc:
        logger.warning("Image %r refused: %s", url, exc)
        return None
    if not path:
        logger.warning("Image %r is not among the static files.", url)
        return None
    if isinstance(path, list):
        path = path[0]
    return open_image(path)


def _open_path(path: str, url: str) -> Image.Image | None:
    if not os.path.isfile(path):
        logger.warning("Image %r: no such file.", url)
        return None
    return open_image(path)


@dataclass
class Rendition:
    """One encoded file of a banner: a width in one format."""

    name: str
    width: int
    height: int
    format: str
    content: bytes

    @property
    def content_type(self) -> str:
        return f"image/{self.format.lower()}"


def encode(
    image: Image.Image, fmt: str = "WEBP", quality: int = 85, method: int | None = None
) -> bytes:
    """``image`` encoded as ``fmt`` ("WEBP", "JPEG", "PNG", "AVIF").

    ``method`` is WebP's speed/size trade-off (0 fastest .. 6 smallest; Pillow's default 4).
    """
    fmt = fmt.upper()
    if fmt == "JPG":
        fmt = "JPEG"
    out = io.BytesIO()
    params: dict[str, Any] = {}
    if fmt == "WEBP":
        params = {"quality": quality, "method": 4 if method is None else method}
    elif fmt == "JPEG":
        params = {"quality": quality, "optimize": False, "progressive": False}
        if image.mode not in ("RGB", "L"):
            image = image.convert("RGB")
    elif fmt == "PNG":
        params = {"compress_level": 6}
    elif fmt == "AVIF":
        params = {"quality": quality}
    image.save(out, fmt, **params)
    return out.getvalue()


def renditions(
    image: Image.Image,
    widths: list[int],
    fmt: str = "WEBP",
    fallback: str = "JPEG",
    quality: int = 85,
    method: int | None = None,
) -> list[Rendition]:
    """The image at full size and at each smaller width, each in ``fmt`` and ``fallback``.

    Names say the width and the format: ``"1200w.webp"``, ``"480w.jpg"``. Widths that are
    not smaller than the image are skipped (the full size covers them); heights keep the
    aspect ratio. ``fallback`` may be empty or equal to ``fmt`` for one format only.
    """
    formats = [fmt.upper()]
    if fallback and fallback.upper() not in formats:
        formats.append(fallback.upper())
    if image.mode not in ("RGB", "RGBA", "L"):
        image = image.convert("RGB")
    smaller = sorted({int(w) for w in widths if 0 < int(w) < image.width}, reverse=True)
    sizes = [image.width, *smaller]
    result = []
    current = image
    for width in sizes:
        if width != current.width:
            height = max(1, round(image.height * width / image.width))
            # Each smaller width from the previous one: cheaper, and as sharp at these steps.
            current = current.resize((width, height), Image.Resampling.LANCZOS, reducing_gap=2.0)
        for name in formats:
            ext = EXTENSIONS.get(name, name.lower())
            content = encode(current, name, quality, method)
            result.append(Rendition(f"{width}w.{ext}", width, current.height, name, content))
    return result


def srcset(urls_by_width: dict[int, str]) -> str:
    """An HTML ``srcset`` value, narrowest first: ``"a.webp 480w, b.webp 960w"``."""
    return ", ".join(
        f"{url.replace(' ', '%20').replace(',', '%2C')} {int(width)}w"
        for width, url in sorted(urls_by_width.items())
        if url
    )
