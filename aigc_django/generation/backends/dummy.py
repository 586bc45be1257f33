"""Dummy backends for tests and for trying the pipeline without any model.

They are deterministic in the brief's seed, batched like real ones, and count their calls so
tests can see batching and process-level reuse.
"""

from __future__ import annotations

import random
from typing import Any

from PIL import Image

from aigc_django.generation.backends.base import (
    CopyBackend,
    CopyDraft,
    GeneratedImage,
    ImageBackend,
    TransientBackendError,
)
from aigc_django.generation.briefs import Brief, fill_placeholders

HEADLINES = ["Fresh picks in {category}", "{product}, now in store", "Made for you: {category}"]
BODIES = [
    "Discover {product} and more from our {category} range.",
    "Our {category} favourites, chosen for you.",
]
CTAS = ["Shop now", "See more", "Discover"]


class DummyCopyBackend(CopyBackend):
    """Template copy: picks among fixed sentences with the brief's seed.

    OPTIONS: ``FAIL_TIMES`` (int) raises TransientBackendError on the first N calls in this
    process; ``DELAY`` (seconds) sleeps per brief, for progress and kill tests.
    """

    name = "dummy"

    def __init__(self, alias: str, options: dict[str, Any]) -> None:
        super().__init__(alias, options)
        self.calls = 0
        self.loads = 0

    def load(self) -> None:
        self.loads += 1

    @property
    def model_version(self) -> str:
        return "1"

    def _generate(self, briefs: list[Brief]) -> list[CopyDraft]:
        import time

        self.calls += 1
        if self.calls <= int(self.options.get("FAIL_TIMES", 0)):
            raise TransientBackendError(f"dummy failure {self.calls}")
        drafts = []
        for brief in briefs:
            time.sleep(float(self.options.get("DELAY", 0)))
            rng = random.Random(brief.seed)
            choices = {"headline": HEADLINES, "body": BODIES, "cta": CTAS}
            fields = {}
            for name, limit in brief.fields.items():
                text = rng.choice(choices.get(name, BODIES))
                fields[name] = fill_placeholders(text, brief)[:limit]
            drafts.append(CopyDraft(fields, self.provenance(brief, brief.seed)))
        return drafts


class DummyImageBackend(ImageBackend):
    """A flat colour from the brief's palette (or a seeded colour)."""

    name = "dummy"

    @property
    def model_version(self) -> str:
        return "1"

    def _generate(self, briefs: list[Brief], size: tuple[int, int]) -> list[GeneratedImage]:
        images = []
        for brief in briefs:
            rng = random.Random(brief.seed)
            if brief.palette:
                colour = brief.palette[rng.randrange(len(brief.palette))]
            else:
                colour = "#" + "".join(f"{rng.randrange(256):02x}" for _ in range(3))
            image = Image.new("RGB", size, colour)
            images.append(GeneratedImage(image, self.provenance(brief, brief.seed)))
        return images
