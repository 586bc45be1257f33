"""Layout quality: the layout VAE (after repair) vs the fixed layouts vs random layouts.

    .venv/bin/python benchmarks/layout_quality.py [--contents 50] [--seeds 4]
        [--synthetic 1500] [--epochs 40] [--candidates 8] [--seed 0] [--device cpu]
        [--model DIR]

Trains the layout model with ``train_layout_model()`` in a throwaway SQLite site (the
composer's layouts only: a fresh shop has no approved variants), or loads ``--model``.
Then, for each of the composer's six standard slot sizes, it makes ``--contents`` banner
contents (headline, body, call to action, zero to three products, logo or none, drawn as
the training data is but from another seed) and lays each one out:

- ``vae``: ``compose.choose_layout`` with the model, ``--seeds`` seeds per content (the
  layouts banners get: a repaired sample, or the fixed layout when no sample of
  ``--candidates`` repairs);
- ``vae raw``: the first sample of each, as the model drew it, before repair;
- ``fixed``: the composer's fixed layout (``compose.plan``);
- ``random``: boxes drawn uniformly (centre anywhere, 5..90% of each side), raw, and after
  the same repair and choice (``--candidates`` draws, else the fixed layout).

It prints the PKU PosterLayout graphic metrics of each (validity, overlap, alignment, the
per-element alignment, underlay; see ``aigc_django.generation.layouts.metrics``) beside
DS-GAN's on PKU PosterLayout (overlap 0.022, alignment 0.0046), the share of banners that
got a repaired sample, and the number of distinct layouts (boxes rounded to 2% of the
banner) per slot size and per banner content.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import configure_throwaway_site

DS_GAN = {"overlap": 0.022, "alignment": 0.0046}


def setup_django(args: argparse.Namespace) -> None:
    workdir = tempfile.mkdtemp(prefix="aigc-layout-bench-")
    configure_throwaway_site(
        f"{workdir}/db.sqlite3",
        ["aigc_django"],
        AIGC={
            "MODEL_DIR": f"{workdir}/models",
            "PROFILES": {"DEVICE": args.device},
            "LAYOUT": {
                "SYNTHETIC": args.synthetic,
                "EPOCHS": args.epochs,
                "CANDIDATES": args.candidates,
            },
        },
    )


def quantized(boxes: dict, size: tuple[int, int]) -> tuple:
    width, height = size
    return tuple(
        sorted(
            (
                name,
                round(b[0] / width * 50),
                round(b[1] / height * 50),
                round(b[2] / width * 50),
                round(b[3] / height * 50),
            )
            for name, b in boxes.items()
        )
    )


def random_proposal(rng: random.Random, names: list[str]) -> dict:
    return {
        name: (rng.uniform(0, 1), rng.uniform(0, 1), rng.uniform(0.05, 0.9), rng.uniform(0.05, 0.9))
        for name in names
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--contents", type=int, default=50, help="banner contents per size")
    parser.add_argument("--seeds", type=int, default=4, help="VAE seeds per content")
    parser.add_argument("--synthetic", type=int, default=1500)
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--candidates", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--model", default=None, help="a trained layout model directory")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(1)  # tiny models: more threads only wait on each other
    setup_django(args)

    from aigc_django.generation import compose
    from aigc_django.generation.layouts import data, metrics, runtime
    from aigc_django.generation.layouts import model as layoutmodel
    from aigc_django.generation.layouts.encoding import Condition, to_pixels
    from aigc_django.generation.layouts.train import train_layout_model

    if args.model:
        model, info = layoutmodel.load(args.model)
        sampler = runtime.LayoutSampler(model, int(info.get("version", 0)), args.model, info)
        report = info.get("metrics", {})
        print(f"Loaded layout model from {args.model}")
    else:
        artifact = train_layout_model(device=args.device, seed=args.seed)
        report = artifact.metrics
        sampler = runtime.active_sampler()
        assert sampler is not None
    print(
        f"Model: {report.get('layouts')} training layouts ({report.get('composer_layouts')} "
        f"from the composer, {report.get('variant_layouts')} from variants), "
        f"{report.get('parameters')} parameters, {report.get('epochs')} epochs in "
        f"{report.get('seconds')} s on {report.get('device')} "
        f"({report.get('samples_per_s')} layouts/s; data {report.get('data_seconds')} s); "
        f"recon {report.get('train_recon')} (held-out {report.get('heldout_recon')}), "
        f"KL {report.get('train_kl')}"
    )

    fonts: tuple[str | None, str | None] = (None, None)
    rng = random.Random(f"bench:{args.seed}")
    names = ("vae", "vae raw", "fixed", "random raw", "random repaired")
    elements: dict[str, list] = {name: [] for name in names}
    distinct: dict[str, dict[tuple[int, int], set]] = {name: {} for name in names}
    per_content: dict[str, list[int]] = {"vae": [], "fixed": []}
    repaired = {"vae": [0, 0], "random repaired": [0, 0]}

    def add(name: str, boxes: dict, size: tuple[int, int], label=None) -> None:
        elements[name].append(metrics.elements_of(boxes, size, label))
        distinct[name].setdefault(size, set()).add(quantized(boxes, size))

    def add_chosen(name: str, content: tuple, proposals: compose.LayoutProposals) -> compose.Layout:
        """The layout a banner of ``content`` gets from ``proposals`` (a repaired sample,
        else the fixed layout), added under ``name``; counts whether a sample was used."""
        choice = compose.choose_layout(*content, proposals=proposals)
        repaired[name][0] += choice.source == "vae"
        repaired[name][1] += 1
        add(name, choice.layout.boxes, content[0], choice.layout.cta_label)
        return choice.layout

    started = time.perf_counter()
    for size in compose.SIZES:
        for _ in range(args.contents):
            _, copy, products, logo, segment = data._random_banner(rng)
            copy = {k: v for k, v in copy.items() if v}
            content = (size, tuple(copy.items()), products, logo, fonts)
            reference = compose.plan(*content)
            if not reference.boxes:
                continue
            condition = Condition.of(size, copy, len(products), logo is not None, None)
            condition = Condition(**{**condition.as_dict(), "segment": segment})

            add("fixed", reference.boxes, size, reference.cta_label)
            seen = set()
            for k in range(args.seeds):
                seed = args.seed * 1000003 + len(elements["vae"]) * 7 + k
                proposals = sampler.propose([condition], [seed], args.candidates)[0]
                add("vae raw", {n: to_pixels(b, size) for n, b in proposals[0].items()}, size)
                layout = add_chosen(
                    "vae",
                    content,
                    compose.LayoutProposals(sampler.version, seed, tuple(proposals)),
                )
                seen.add(quantized(layout.boxes, size))
            per_content["vae"].append(len(seen))
            per_content["fixed"].append(1)
            names_here = condition.elements()
            add(
                "random raw",
                {
                    n: to_pixels(b, size)
                    for n, b in random_proposal(rng, names_here).items()
                    if n in reference.boxes
                },
                size,
            )
            randoms = tuple(random_proposal(rng, names_here) for _ in range(args.candidates))
            # Random draws through the same repair and choice as the model's samples.
            add_chosen("random repaired", content, compose.LayoutProposals(0, 0, randoms))
    seconds = time.perf_counter() - started

    print(
        f"\n{len(elements['fixed'])} banner contents over {len(compose.SIZES)} slot sizes "
        f"({', '.join(f'{w}x{h}' for w, h in compose.SIZES)}), {args.seeds} VAE seeds each, "
        f"{args.candidates} candidates per banner; {seconds:.0f} s"
    )
    header = (
        f"{'layouts':<18}{'n':>6}{'validity':>10}{'overlap':>10}{'alignment':>11}"
        f"{'elem.align':>11}{'und_l':>8}{'und_s':>8}{'repaired':>10}"
    )
    print(header)
    print("-" * len(header))
    for name in names:
        scores = metrics.graphic_metrics(elements[name])
        share = repaired.get(name)
        print(
            f"{name:<18}{len(elements[name]):>6}{scores['validity']:>10.4f}"
            f"{scores['overlap']:>10.4f}{scores['alignment']:>11.6f}"
            f"{scores['element_alignment']:>11.6f}{scores['underlay']:>8.3f}"
            f"{scores['underlay_strict']:>8.3f}"
            f"{(f'{share[0] / share[1]:.1%}' if share else '-'):>10}"
        )
    print(
        f"{'DS-GAN (PKU)':<18}{'':>6}{'':>10}{DS_GAN['overlap']:>10.4f}{DS_GAN['alignment']:>11.4f}"
    )
    print("\nDistinct layouts per slot size (boxes rounded to 2% of the banner):")
    print(f"{'size':<12}" + "".join(f"{n:>17}" for n in ("fixed", "vae", "random repaired")))
    for size in compose.SIZES:
        print(
            f"{f'{size[0]}x{size[1]}':<12}"
            + "".join(
                f"{len(distinct[n].get(size, ())):>17}" for n in ("fixed", "vae", "random repaired")
            )
        )
    mean_vae = sum(per_content["vae"]) / max(1, len(per_content["vae"]))
    print(
        f"Distinct layouts per banner content over {args.seeds} seeds: "
        f"vae {mean_vae:.2f}, fixed 1.00"
    )


if __name__ == "__main__":
    main()
