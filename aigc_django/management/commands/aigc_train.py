from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError, CommandParser
from tqdm import tqdm

from aigc_django.generation.copymodel.train import DEFAULT_EPOCHS, train_copy_model


class Command(BaseCommand):
    help = (
        "Train the builtin copy model on the shop's own text (product titles and "
        "descriptions, category names, slot briefs, approved copy) and make it the active "
        "copy model: a new versioned ModelArtifact under AIGC['MODEL_DIR']/copy/."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--epochs",
            type=int,
            default=DEFAULT_EPOCHS,
            help=f"Passes over the corpus (default {DEFAULT_EPOCHS}).",
        )
        parser.add_argument(
            "--device",
            default=None,
            help='"cpu", "cuda", "cuda:1"... (default: AIGC["PROFILES"]["DEVICE"]).',
        )
        parser.add_argument("--seed", type=int, default=0, help="Random seed (default 0).")
        parser.add_argument("--no-progress", action="store_true", help="No progress bar.")

    def handle(
        self, *args, epochs: int, device: str | None, seed: int, no_progress: bool, **options
    ) -> None:
        if epochs < 1:
            raise CommandError("--epochs must be at least 1.")
        bar = tqdm(desc="training", unit="step", disable=no_progress, file=self.stderr)

        def progress(step: int, total: int) -> None:
            bar.total = total
            bar.update(step - bar.n)

        try:
            artifact = train_copy_model(epochs=epochs, progress=progress, device=device, seed=seed)
        finally:
            bar.close()
        m = artifact.metrics
        self.stdout.write(
            f"Trained copy model v{artifact.version} in {m['seconds']:.1f}s on {m['device']}: "
            f"{m['examples']} examples, vocabulary {m['vocab']}, {m['parameters']:,} parameters, "
            f"{m['epochs']} epochs."
        )
        self.stdout.write(
            f"Train loss {m['train_loss']}, held-out loss {m['heldout_loss']}, "
            f"held-out perplexity {m['heldout_perplexity']}."
        )
        self.stdout.write(f"Saved to {artifact.path} (now the active copy model).")
