"""Banner composition speed: ``compose_many`` vs a plain compose-and-encode loop.

    .venv/bin/python benchmarks/banners.py [--banners 400] [--workers 2] [--method 2]
        [--quality 85] [--size 1200x628] [--repeats 2]

Both sides compose the same jobs (1200x628 by default: builtin-backend backgrounds, three
copy variants, one or two catalog products, transparent PNG and opaque JPEG, a logo) and
encode each banner as one WebP file:

* ``plain``: one process, ``compose_banner`` with its font and layout caches cleared before
  every banner (as a composer without caches would run), then ``image.save(..., "WEBP",
  quality=Q)`` with Pillow's default effort (method 4);
* ``compose_many``: ``compose_many(jobs, workers=W, widths=[], fallback="", quality=Q,
  method=M)``: forked workers that share the jobs without copying them, cached fonts,
  layouts and resized product images, WebP effort M.

The backgrounds are made first, as one batch of the builtin image backend (timed apart, and
against one call per banner). Runs alternate plain / compose_many; the best run of each
counts. A last table shows the full file set the service writes (WebP + JPEG, 480 and 960
wide renditions) both ways.
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def setup() -> None:
    import django
    from django.conf import settings

    if not settings.configured:
        settings.configure(INSTALLED_APPS=[], AIGC={}, USE_TZ=True)
    django.setup()


def make_products():
    from PIL import Image, ImageDraw

    from aigc_django.generation.images import open_image

    cut_out = Image.new("RGBA", (900, 600), (0, 0, 0, 0))
    draw = ImageDraw.Draw(cut_out)
    draw.ellipse((40, 150, 860, 560), fill=(200, 40, 40, 255))
    draw.rectangle((120, 40, 420, 300), fill=(30, 30, 160, 255))
    png = io.BytesIO()
    cut_out.save(png, "PNG")
    photo = Image.new("RGB", (600, 1200), (248, 248, 248))
    ImageDraw.Draw(photo).rectangle((100, 120, 500, 1080), fill=(20, 120, 60))
    jpeg = io.BytesIO()
    photo.save(jpeg, "JPEG", quality=90)
    return [open_image(png.getvalue()), open_image(jpeg.getvalue())]


COPIES = [
    {"headline": "New in: trail shoes", "body": "Lighter than ever.", "cta": "Shop now"},
    {
        "headline": "Fresh picks for your summer runs",
        "body": "Breathable shoes and linen shirts, chosen for the way you move.",
        "cta": "See the collection",
    },
    {
        "headline": "Tea for slow mornings: green, white and oolong",
        "body": "Loose-leaf teas from small gardens, packed the week they arrive.",
        "cta": "Discover",
    },
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--banners", type=int, default=400)
    parser.add_argument("--workers", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--method", type=int, default=2, help="WebP effort of compose_many")
    parser.add_argument("--quality", type=int, default=85)
    parser.add_argument("--size", default="1200x628")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    setup()
    import PIL
    import torch
    from PIL import Image, ImageDraw, features

    from aigc_django.generation.backends.builtin_image import BuiltinImageBackend
    from aigc_django.generation.briefs import Brief
    from aigc_django.generation.compose import (
        BannerJob,
        BrandStyle,
        clear_caches,
        compose_banner,
        compose_many,
    )
    from aigc_django.generation.images import renditions

    width, height = (int(v) for v in args.size.split("x"))
    size = (width, height)
    print(
        f"$ .venv/bin/python benchmarks/banners.py --banners {args.banners} "
        f"--workers {args.workers} --method {args.method} --quality {args.quality} "
        f"--size {args.size} --repeats {args.repeats}"
    )
    print(
        f"nproc={os.cpu_count()} (usable {len(os.sched_getaffinity(0))}), Python "
        f"{platform.python_version()}, Pillow {PIL.__version__} (libwebp "
        f"{features.version('webp')}, FreeType {features.version('freetype2')}), "
        f"torch {torch.__version__} ({torch.get_num_threads()} threads)"
    )
    logo = Image.new("RGBA", (360, 120), (0, 0, 0, 0))
    ImageDraw.Draw(logo).rounded_rectangle((0, 0, 359, 119), 24, fill=(245, 158, 11, 255))
    style = BrandStyle(logo=logo)
    products = make_products()
    briefs = [
        Brief("home-hero", f"segment-{i % 6}", "Segment", {"headline": 60}, seed=i)
        for i in range(args.banners)
    ]
    backend = BuiltinImageBackend("default", {"DEVICE": "cpu"})
    backend.generate(briefs[:2], size)  # load and warm up
    start = time.perf_counter()
    backgrounds = [g.image for g in backend.generate(briefs, size)]
    batch_time = time.perf_counter() - start
    one = min(24, len(briefs))
    start = time.perf_counter()
    for item in briefs[:one]:
        backend.generate([item], size)
    single_time = (time.perf_counter() - start) / one
    print(
        f"Backgrounds (builtin backend, {width}x{height}): one batch of {len(briefs)} "
        f"{batch_time:.2f} s = {1000 * batch_time / len(briefs):.1f} ms each; one call per "
        f"banner {1000 * single_time:.1f} ms each"
    )
    jobs = [
        BannerJob(
            backgrounds[i],
            size,
            COPIES[i % len(COPIES)],
            [products[i % 2]] if i % 3 else products,
            style,
        )
        for i in range(args.banners)
    ]

    def plain() -> tuple[float, int, int]:
        total_bytes = ok = 0
        start = time.perf_counter()
        for job in jobs:
            clear_caches()
            banner = compose_banner(job.background, job.size, job.copy, job.products, style)
            out = io.BytesIO()
            banner.image.save(out, "WEBP", quality=args.quality)
            total_bytes += out.tell()
            ok += banner.ok
        return time.perf_counter() - start, total_bytes, ok

    def fast() -> tuple[float, int, int]:
        start = time.perf_counter()
        results = compose_many(
            jobs,
            workers=args.workers,
            widths=[],
            fallback="",
            quality=args.quality,
            method=args.method,
        )
        elapsed = time.perf_counter() - start
        total_bytes = sum(r.renditions[0].content.__len__() for r in results)
        return elapsed, total_bytes, sum(r.ok for r in results)

    print(f"\n{args.banners} banners of {width}x{height}, one WebP each (quality {args.quality}):")
    best: dict[str, tuple[float, int, int]] = {}
    for repeat in range(args.repeats):
        for name, run in (("plain", plain), ("compose_many", fast)):
            elapsed, total_bytes, ok = run()
            rate = args.banners / elapsed
            print(
                f"  {name:13} run {repeat}: {elapsed:6.2f} s  {rate:7.1f} banners/s  "
                f"{total_bytes / args.banners / 1024:6.1f} KiB/banner  ok {ok}/{args.banners}"
            )
            if name not in best or elapsed < best[name][0]:
                best[name] = (elapsed, total_bytes, ok)
    plain_rate = args.banners / best["plain"][0]
    fast_rate = args.banners / best["compose_many"][0]
    print(
        f"  -> compose_many {fast_rate:.1f} banners/s vs plain {plain_rate:.1f} banners/s: "
        f"ratio {fast_rate / plain_rate:.2f}x (goal >= 100 banners/s: "
        f"{'met' if fast_rate >= 100 else 'NOT met'})"
    )

    count = min(args.banners, 120)
    print(f"\nFull file set ({count} banners: WebP + JPEG, 480 and 960 wide renditions):")
    start = time.perf_counter()
    for job in jobs[:count]:
        clear_caches()
        banner = compose_banner(job.background, job.size, job.copy, job.products, style)
        renditions(banner.image, [480, 960], "WEBP", "JPEG", args.quality, method=None)
    plain_full = count / (time.perf_counter() - start)
    start = time.perf_counter()
    compose_many(
        jobs[:count],
        workers=args.workers,
        widths=[480, 960],
        fmt="WEBP",
        fallback="JPEG",
        quality=args.quality,
        method=args.method,
    )
    fast_full = count / (time.perf_counter() - start)
    print(
        f"  plain {plain_full:.1f} banners/s, compose_many {fast_full:.1f} banners/s: "
        f"ratio {fast_full / plain_full:.2f}x"
    )


if __name__ == "__main__":
    main()
