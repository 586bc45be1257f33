from __future__ import annotations

from collections.abc import Callable

from django.core.management.base import BaseCommand, CommandError, CommandParser
from tqdm import tqdm

from aigc_django.models import ModelArtifact


def _train_copy(
    *, epochs: int | None, device: str | None, seed: int, progress: Callable[[int, int], None]
) -> tuple[ModelArtifact, list[str]]:
    from aigc_django.generation.copymodel.train import train_copy_model

    kwargs = {"epochs": epochs} if epochs else {}
    artifact = train_copy_model(progress=progress, device=device, seed=seed, **kwargs)
    m = artifact.metrics
    return artifact, [
        f"Trained copy model v{artifact.version} in {m['seconds']:.1f}s on {m['device']}: "
        f"{m['examples']} examples, vocabulary {m['vocab']}, {m['parameters']:,} parameters, "
        f"{m['epochs']} epochs.",
        f"Train loss {m['train_loss']}, held-out loss {m['heldout_loss']}, "
        f"held-out perplexity {m['heldout_perplexity']}.",
    ]


def _train_layout(
    *, epochs: int | None, device: str | None, seed: int, progress: Callable[[int, int], None]
) -> tuple[ModelArtifact, list[str]]:
    from aigc_django.generation.layouts.train import TooFewLayouts, train_layout_model

    try:
        artifact = train_layout_model(epochs=epochs, device=device, seed=seed, progress=progress)
    except TooFewLayouts as exc:
        raise CommandError(str(exc)) from exc
    m = artifact.metrics
    return artifact, [
        f"Trained layout model v{artifact.version} in {m['seconds']:.1f}s on {m['device']}: "
        f"{m['layouts']} layouts ({m['composer_layouts']} from the composer, "
        f"{m['variant_layouts']} from {m['variant_banners']} approved or clicked variants), "
        f"{m['parameters']:,} parameters, {m['epochs']} epochs, {m['samples_per_s']} layouts/s.",
        f"Reconstruction error {m['train_recon']} (held-out {m['heldout_recon']}), "
        f"KL {m['train_kl']} (held-out {m['heldout_kl']}).",
    ]


def _train_gan(
    *, epochs: int | None, device: str | None, seed: int, progress: Callable[[int, int], None]
) -> tuple[ModelArtifact, list[str]]:
    from aigc_django.generation.gan.data import TooFewImages
    from aigc_django.generation.gan.train import train_gan_model

    try:
        artifact = train_gan_model(epochs=epochs, device=device, seed=seed, progress=progress)
    except TooFewImages as exc:
        raise CommandError(str(exc)) from exc
    m = artifact.metrics
    return artifact, [
        f"Trained image GAN v{artifact.version} in {m['seconds']:.1f}s on {m['device']}: "
        f"{m['images']} images {m['sources']}, {len(m['categories'])} categories, "
        f"{m['parameters']:,} generator parameters, {m['steps']} steps "
        f"({m['images_per_second']} images/s).",
        f"Final losses: discriminator {m['d_loss']}, generator {m['g_loss']}.",
    ]


# What `aigc_train <model>` can train: a function taking epochs (None: the model's default),
# device, seed and a progress callback, returning the new active artifact and report lines.
TRAINERS: dict[str, Callable[..., tuple[ModelArtifact, list[str]]]] = {
    "copy": _train_copy,
    "layout": _train_layout,
    "gan": _train_gan,
}


class Command(BaseCommand):
    help = (
        "Train one of the app's builtin models on the shop's own data and make it the active "
        "one: a new versioned ModelArtifact under AIGC['MODEL_DIR']/<model>/. 'copy' (the "
        "default) is the copy model, trained on product titles and descriptions, category "
        "names, slot briefs and approved copy; 'layout' is the banner layout model, trained on "
        "the composer's layouts and those of approved and clicked variants; 'gan' is the image "
        "GAN (the gan image backend), trained on the catalog's product images and approved "
        "banner backgrounds (at least 16 images; --epochs counts passes over them)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "model",
            nargs="?",
            default="copy",
            choices=sorted(TRAINERS),
            help="Which model to train (default: copy).",
        )
        parser.add_argument(
            "--epochs",
            type=int,
            default=None,
            help="Passes over the training data (default: the model's own default).",
        )
        parser.add_argument(
            "--device",
            default=None,
            help='"cpu", "cuda", "cuda:1"... (default: AIGC["PROFILES"]["DEVICE"]).',
        )
        parser.add_argument("--seed", type=int, default=0, help="Random seed (default 0).")
        parser.add_argument("--no-progress", action="store_true", help="No progress bar.")

    def handle(
        self,
        *args,
        model: str,
        epochs: int | None,
        device: str | None,
        seed: int,
        no_progress: bool,
        **options,
    ) -> None:
        if epochs is not None and epochs < 1:
            raise CommandError("--epochs must be at least 1.")
        bar = tqdm(desc=f"training {model}", unit="step", disable=no_progress, file=self.stderr)

        def progress(step: int, total: int) -> None:
            bar.total = total
            bar.update(step - bar.n)

        try:
            artifact, report = TRAINERS[model](
                epochs=epochs, device=device, seed=seed, progress=progress
            )
        finally:
            bar.close()
        for line in report:
            self.stdout.write(line)
        self.stdout.write(f"Saved to {artifact.path} (now the active {model} model).")
