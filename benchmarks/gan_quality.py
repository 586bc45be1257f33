"""Quality of the image GAN on the example shop's images, against procedural backgrounds.

    .venv/bin/python benchmarks/gan_quality.py [--products 48] [--steps 400] [--samples 240]
        [--threads 2] [--device cpu] [--grid docs/img/gan_nearest.png]

Builds the example project's catalog with its own command (``seed_catalog``: products with
Pillow-drawn product photos, six categories) in a throwaway SQLite site with the example's
``shop`` app, trains the GAN with ``train_gan_model()`` (the real code path: catalog adapter,
images from storage, a versioned artifact) and compares, at the GAN's native 64x64:

- the shop's images: every training image, centre square;
- GAN samples: ``--samples`` images from the active artifact through ``gan.model.sample``,
  each conditioned on the category and dominant palette of a training image drawn at
  random (the conditions the shop's images have);
- procedural backgrounds: the ``builtin`` image backend at 64x64 for the same number of
  briefs, each with the same drawn training image's category and palette as the brief's
  palette (so both generators get the same colours).

Features (no pretrained network can be downloaded here, so no Inception): each image
becomes (a) a joint RGB colour histogram, 4x4x4 bins, and (b) the spatial mean and standard
deviation of the ReLU maps of a fixed random convolutional net (three 3x3 convolutions,
stride 2, 32/64/64 channels, He-initialised from seed 0), which respond to edges and
textures at three scales (random conv features are known to track FID-like rankings
reasonably for simple images; they are not a perceptual metric). Each block is centred on the
real images' mean and scaled to unit total variance over them (equal weight per block), then
concatenated.

Reported: KID (unbiased MMD² with the cubic polynomial kernel, mean and spread over random
subsets; lower is closer to the shop's images) for GAN and procedural; diversity (mean
pairwise feature distance) for GAN, procedural and the real images; a nearest-neighbour check
(each GAN sample's distance to its nearest training image, in the features and in pixels,
against each training image's distance to its nearest other training image); and the
training time. ``--grid`` saves samples beside their nearest training images.
"""

from __future__ import annotations

import argparse
import math
import os
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import ROOT, configure_throwaway_site

RES = 64


def setup_django(workdir: str) -> None:
    """A throwaway SQLite site with the app and the example project's shop as its catalog."""
    example = str(ROOT / "example_project")
    if example not in sys.path:
        sys.path.insert(0, example)
    configure_throwaway_site(
        f"{workdir}/db.sqlite3",
        ["aigc_django", "shop"],
        run_syncdb=True,
        MEDIA_ROOT=f"{workdir}/media",
        MEDIA_URL="/media/",
        ROOT_URLCONF="aigc_django.urls",
        AIGC={
            "CATALOG": {
                "MODEL": "shop.Product",
                "FIELDS": {
                    "key": "sku",
                    "title": "name",
                    "category": "category__slug",
                    "image": "image",
                },
            },
            "MODEL_DIR": f"{workdir}/models",
            "PROFILES": {"DEVICE": "cpu"},
        },
    )


def to_tensor(images):
    import torch

    arrays = [torch.frombuffer(bytearray(i.tobytes()), dtype=torch.uint8) for i in images]
    return torch.stack([a.view(RES, RES, 3).permute(2, 0, 1) for a in arrays]).float() / 255


class Features:
    """Colour histograms and fixed random conv-net statistics (see the module docstring)."""

    def __init__(self) -> None:
        import torch

        gen = torch.Generator().manual_seed(0)
        self.weights = []
        cin = 3
        for cout in (32, 64, 64):
            w = torch.randn(cout, cin, 3, 3, generator=gen) * math.sqrt(2 / (cin * 9))
            self.weights.append(w)
            cin = cout
        self.mean = None
        self.scale = None

    def raw(self, x):
        import torch
        from torch.nn import functional as F

        q = (x * 3.999).long().clamp(0, 3)
        index = q[:, 0] * 16 + q[:, 1] * 4 + q[:, 2]
        hist = torch.stack([torch.bincount(i.flatten(), minlength=64) for i in index]).float()
        hist = hist / hist.sum(1, keepdim=True)
        h, stats = x * 2 - 1, []
        for w in self.weights:
            h = F.relu(F.conv2d(h, w, stride=2, padding=1))
            stats += [h.mean(dim=(2, 3)), h.std(dim=(2, 3))]
        return [hist, torch.cat(stats, 1)]

    def fit(self, x) -> None:
        blocks = self.raw(x)
        self.mean = [b.mean(0) for b in blocks]
        # One scale per block (its total variance on the real images), not per dimension: a
        # histogram bin that no real image fills must not blow up.
        self.scale = [b.var(0).sum().sqrt().clamp_min(1e-9) for b in blocks]

    def __call__(self, x):
        import torch

        blocks = self.raw(x)
        return torch.cat(
            [(b - m) / s for b, m, s in zip(blocks, self.mean, self.scale, strict=True)], 1
        )


def kid(x, y, subsets: int = 50, size: int | None = None, seed: int = 0) -> tuple[float, float]:
    """Kernel inception distance (unbiased MMD², cubic polynomial kernel) and its spread."""
    import torch

    d = x.shape[1]
    size = size or max(8, int(0.75 * min(len(x), len(y))))
    rng = torch.Generator().manual_seed(seed)
    values = []
    for _ in range(subsets):
        a = x[torch.randperm(len(x), generator=rng)[:size]].double()
        b = y[torch.randperm(len(y), generator=rng)[:size]].double()
        kxx = (a @ a.T / d + 1) ** 3
        kyy = (b @ b.T / d + 1) ** 3
        kxy = (a @ b.T / d + 1) ** 3
        m = size
        mmd = (
            (kxx.sum() - kxx.diagonal().sum()) / (m * (m - 1))
            + (kyy.sum() - kyy.diagonal().sum()) / (m * (m - 1))
            - 2 * kxy.mean()
        )
        values.append(float(mmd))
    t = torch.tensor(values)
    return float(t.mean()), float(t.std())


def mean_pairwise(x) -> float:
    import torch

    dist = torch.cdist(x, x)
    n = len(x)
    return float(dist.sum() / (n * (n - 1)))


def nearest(a, b, same: bool = False):
    import torch

    dist = torch.cdist(a, b)
    if same:
        dist.fill_diagonal_(float("inf"))
    return dist.min(1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--products", type=int, default=48)
    parser.add_argument("--steps", type=int, default=None, help="default: the trainer's own")
    parser.add_argument("--samples", type=int, default=240)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: see docs)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--grid", default="", help="save samples beside their nearest images")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    workdir = tempfile.mkdtemp(prefix="aigc-gan-bench-")
    setup_django(workdir)
    from django.core.management import call_command

    from aigc_django.generation.backends.builtin_image import BuiltinImageBackend
    from aigc_django.generation.briefs import Brief
    from aigc_django.generation.gan import model as ganmodel
    from aigc_django.generation.gan.data import collect_images, dominant_palette, square
    from aigc_django.generation.gan.train import DEFAULT_STEPS, train_gan_model

    started = time.perf_counter()
    with open(os.devnull, "w") as quiet:
        call_command("seed_catalog", "--products", str(args.products), stdout=quiet)
    print(f"Example catalog: {args.products} products in {time.perf_counter() - started:.1f}s")
    steps = args.steps or DEFAULT_STEPS
    started = time.perf_counter()
    artifact = train_gan_model(
        steps=steps, device=args.device, seed=args.seed, threads=args.threads
    )
    wall = time.perf_counter() - started
    m = artifact.metrics
    print(
        f"Training: {m['images']} images, {m['steps']} steps of {m['batch_size']} "
        f"({m['epochs']} epochs), {m['parameters']:,} generator parameters, device "
        f"{m['device']}, torch threads {args.threads}: {wall:.1f}s wall "
        f"({m['train_seconds']}s in the loop, {m['images_per_second']} images/s)"
    )
    print(f"Loss curve (d, g) by tenths: {m['d_loss_curve']} / {m['g_loss_curve']}")

    pictures = collect_images()
    real_images = [square(p.image, RES) for p in pictures]
    loaded = ganmodel.load(artifact.path)
    rng = random.Random(args.seed)
    picks = [rng.randrange(len(pictures)) for _ in range(args.samples)]
    palettes = [dominant_palette(pictures[i].image) for i in picks]
    from aigc_django.generation.gan.data import palette_tensor

    gan = ganmodel.sample(
        loaded,
        [1000 + n for n in range(args.samples)],
        [loaded.category_index(pictures[i].category) for i in picks],
        torch.stack([palette_tensor(p) for p in palettes]),
    )
    builtin = BuiltinImageBackend("bench", {"DEVICE": "cpu"})
    briefs = [
        Brief(
            slot="bench",
            segment="bench",
            segment_name="Bench",
            fields={"headline": 40},
            categories=[(pictures[i].category, pictures[i].category)],
            palette=["#{:02x}{:02x}{:02x}".format(*c) for c in palettes[n]],
            seed=1000 + n,
        )
        for n, i in enumerate(picks)
    ]
    procedural_images = [g.image for g in builtin.generate(briefs, (RES, RES))]

    real = to_tensor(real_images)
    procedural = to_tensor(procedural_images)
    features = Features()
    features.fit(real)
    f_real, f_gan, f_proc = features(real), features(gan), features(procedural)

    kid_gan = kid(f_gan, f_real)
    kid_proc = kid(f_proc, f_real)
    # The floor: two halves of the shop's own images against each other.
    half = len(f_real) // 2
    order = torch.randperm(len(f_real), generator=torch.Generator().manual_seed(1))
    kid_self = kid(f_real[order[:half]], f_real[order[half:]])
    print()
    print(f"{'64x64, against the shop images':<34}{'KID x1000':>16}{'diversity':>10}")

    def row(name: str, value: tuple[float, float], diversity: float) -> None:
        print(f"{name:<34}{value[0] * 1000:>8.2f} ± {value[1] * 1000:<5.2f}{diversity:>10.3f}")

    row("real (half vs half: the floor)", kid_self, mean_pairwise(f_real))
    row("GAN samples", kid_gan, mean_pairwise(f_gan))
    row("procedural (builtin backend)", kid_proc, mean_pairwise(f_proc))
    print(f"KID ratio procedural / GAN: {kid_proc[0] / max(kid_gan[0], 1e-12):.2f}x")

    # Nearest neighbours: features and pixels (32x32, so one-pixel shifts matter less).
    def small(x):
        return torch.nn.functional.avg_pool2d(x, 2).flatten(1)

    print()
    print("Nearest training image (median / 5th percentile / min distance):")
    for name, a, b in (("features", f_gan, f_real), ("pixels", small(gan), small(real))):
        to_train = nearest(a, b).values
        within = nearest(b, b, same=True).values
        q = torch.tensor([0.5, 0.05])
        s, t = torch.quantile(to_train, q), torch.quantile(within, q)
        closer = float((to_train < within.min()).float().mean())
        print(
            f"  {name:<9} GAN sample -> train {s[0]:.3f} / {s[1]:.3f} / {to_train.min():.3f};"
            f"  train -> other train {t[0]:.3f} / {t[1]:.3f} / {within.min():.3f};"
            f"  median ratio {s[0] / t[0]:.2f};"
            f" samples closer than the closest training pair: {closer:.1%}"
        )

    if args.grid:
        from PIL import Image

        index = nearest(small(gan), small(real)).indices
        rows, cols, cell = 4, 8, RES * 2
        sheet = Image.new("RGB", (cols * cell, rows * 2 * cell + 8 * rows), "white")
        for n in range(rows * cols):
            r, c = divmod(n, cols)
            pixels = (gan[n] * 255 + 0.5).to(torch.uint8).permute(1, 2, 0).numpy()
            sample = Image.fromarray(pixels, "RGB").resize((cell, cell), Image.Resampling.NEAREST)
            match = real_images[int(index[n])].resize((cell, cell), Image.Resampling.NEAREST)
            top = r * (2 * cell + 8)
            sheet.paste(sample, (c * cell, top))
            sheet.paste(match, (c * cell, top + cell))
        Path(args.grid).parent.mkdir(parents=True, exist_ok=True)
        sheet.save(args.grid)
        print(f"\nGrid (each GAN sample above its nearest training image in pixels): {args.grid}")


if __name__ == "__main__":
    main()
