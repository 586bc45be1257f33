"""The diffusers image backend, on a tiny random-weight Stable Diffusion pipeline.

The pipeline is built here from configs (UNet, VAE, CLIP text encoder, a CLIP tokenizer
over a byte-level vocabulary written here, a DDIM scheduler), saved with ``save_pretrained``
and loaded through the backend's real loading code; nothing is downloaded. Its images are
noise, but sizes, batching and seeding are the real ones.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from django.core.exceptions import ImproperlyConfigured

from aigc_django.generation.backends import image_backend
from aigc_django.generation.briefs import Brief

os.environ.setdefault("HF_HUB_OFFLINE", "1")
torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")
pytest.importorskip("transformers")

from aigc_django.generation.backends.diffusers_image import (  # noqa: E402
    DiffusersImageBackend,
    plan_size,
)

BACKEND = "aigc_django.generation.backends.diffusers_image.DiffusersImageBackend"


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP's printable stand-ins for the 256 byte values."""
    printable = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("\u00a1"), ord("\u00ac") + 1))
        + list(range(ord("\u00ae"), ord("\u00ff") + 1))
    )
    chars = printable[:]
    extra = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            chars.append(256 + extra)
            extra += 1
    return dict(zip(printable, (chr(c) for c in chars), strict=True))


def write_clip_tokenizer(path) -> None:
    """A CLIP tokenizer with one token per byte (and per word-final byte), no merges."""
    path.mkdir(parents=True, exist_ok=True)
    symbols = list(bytes_to_unicode().values())
    vocab = {}
    for symbol in symbols + [s + "</w>" for s in symbols]:
        vocab[symbol] = len(vocab)
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    (path / "vocab.json").write_text(json.dumps(vocab))
    (path / "merges.txt").write_text("#version: 0.2\n")


def build_pipeline(
    path,
    unet_channels: tuple[int, ...] = (32, 64),
    vae_channels: tuple[int, ...] = (32, 64),
    sample_size: int = 32,
    text_width: int = 32,
    layers_per_block: int = 1,
):
    """Save a random-weight StableDiffusionPipeline to ``path``; return it.

    The native size is ``sample_size * 2 ** (len(vae_channels) - 1)`` pixels. The defaults
    make a pipeline of about half a million weights, native 64x64.
    """
    from diffusers import (
        AutoencoderKL,
        DDIMScheduler,
        StableDiffusionPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    torch.manual_seed(0)
    levels = len(unet_channels)
    unet = UNet2DConditionModel(
        block_out_channels=unet_channels,
        layers_per_block=layers_per_block,
        sample_size=sample_size,
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D",) + ("CrossAttnDownBlock2D",) * (levels - 1),
        up_block_types=("CrossAttnUpBlock2D",) * (levels - 1) + ("UpBlock2D",),
        cross_attention_dim=text_width,
        attention_head_dim=8,
        norm_num_groups=min(32, unet_channels[0]),
    )
    vae = AutoencoderKL(
        block_out_channels=vae_channels,
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * len(vae_channels),
        up_block_types=("UpDecoderBlock2D",) * len(vae_channels),
        latent_channels=4,
        layers_per_block=1,
        norm_num_groups=min(32, vae_channels[0]),
    )
    write_clip_tokenizer(path / "tokenizer-src")
    tokenizer = CLIPTokenizer(
        str(path / "tokenizer-src" / "vocab.json"),
        str(path / "tokenizer-src" / "merges.txt"),
        model_max_length=77,
    )
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=len(tokenizer),
            hidden_size=text_width,
            intermediate_size=text_width * 2,
            num_attention_heads=4,
            num_hidden_layers=2,
            max_position_embeddings=77,
            projection_dim=text_width,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
    )
    scheduler = DDIMScheduler(
        steps_offset=1,
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
    )
    pipeline = StableDiffusionPipeline(
        unet=unet,
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipeline.save_pretrained(path / "pipeline")
    return pipeline


def make_brief(segment: str = "hikers", seed: int = 1) -> Brief:
    return Brief(
        slot="home-hero",
        segment=segment,
        segment_name=segment.title(),
        fields={"headline": 40},
        categories=[("boots", "Boots"), ("tents", "Tents")],
        brand_voice="outdoorsy",
        seed=seed,
    )


@pytest.fixture(scope="module")
def pipeline_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny-sd")
    build_pipeline(root)
    return root / "pipeline"


@pytest.fixture(scope="module")
def backend(pipeline_dir):
    backend = DiffusersImageBackend(
        "test", {"PATH": str(pipeline_dir), "DEVICE": "cpu", "STEPS": 2, "BATCH_SIZE": 2}
    )
    yield backend
    backend.close()


def pixels(image) -> torch.Tensor:
    return torch.from_numpy(np.asarray(image, dtype=np.int16))


def test_a_batch_gives_one_seeded_image_per_brief_at_the_requested_size(backend):
    briefs = [make_brief("hikers", seed=1), make_brief("campers", seed=2)]
    images = backend.generate(briefs, (64, 48))
    assert len(images) == 2
    assert all(g.image.size == (64, 48) and g.image.mode == "RGB" for g in images)
    assert backend.pipeline.device.type == "cpu"
    assert backend.pipeline.unet.dtype == torch.float32
    # Drawn near the native 64x64 area with the target's aspect, in multiples of 16.
    assert images[0].notes["drawn_at"] == [80, 48]
    assert images[0].notes["pipeline"] == "StableDiffusionPipeline"
    assert "Boots, Tents" in images[0].notes["prompt"]
    provenance = images[1].provenance
    assert provenance.backend == "diffusers" and provenance.model == "pipeline"
    assert provenance.seed == 2 and provenance.brief_hash == briefs[1].hash
    assert len(provenance.version) == 12
    assert provenance.timings["load"] > 0 and provenance.timings["generate"] > 0

    again = backend.generate(briefs, (64, 48))
    assert [g.image.tobytes() for g in again] == [g.image.tobytes() for g in images]
    # Each image's noise comes from its own seed: alone, or first in another batch, it is the
    # same image (up to rounding of batched arithmetic).
    alone = backend.generate([briefs[1]], (64, 48))[0]
    assert (pixels(alone.image) - pixels(images[1].image)).abs().max() <= 2
    swapped = backend.generate([make_brief("campers", seed=1), briefs[1]], (64, 48))
    assert (pixels(swapped[1].image) - pixels(images[1].image)).abs().max() <= 2
    # The prompt depends on categories, not on the segment: same prompt, same seed, same image.
    assert (pixels(images[0].image) - pixels(swapped[0].image)).abs().max() <= 2
    # A different seed draws a different image.
    other = backend.generate([make_brief("hikers", seed=3)], (64, 48))[0]
    assert (pixels(other.image) - pixels(images[0].image)).abs().float().mean() > 5


def test_batches_are_split_by_batch_size(backend):
    backend.ensure_loaded()
    calls = []
    pipeline_type = type(backend.pipeline)
    original = pipeline_type.__call__

    def counting(self, *args, **kwargs):
        calls.append(len(kwargs["prompt"]))
        assert len(kwargs["generator"]) == len(kwargs["prompt"])
        return original(self, *args, **kwargs)

    pipeline_type.__call__ = counting
    try:
        images = backend.generate([make_brief(seed=s) for s in range(3)], (32, 32))
    finally:
        pipeline_type.__call__ = original
    assert calls == [2, 1]
    assert [g.image.size for g in images] == [(32, 32)] * 3
    assert images[0].notes["drawn_at"] == [64, 64]


def test_plan_size_keeps_the_aspect_near_the_native_area():
    assert plan_size((1200, 628), 512, 64, 1536) == (704, 384)
    assert plan_size((1200, 628), 1024, 64, 1536) == (1408, 768)
    assert plan_size((300, 250), 512, 64, 1536) == (576, 448)
    assert plan_size((4000, 100), 1024, 64, 1536) == (1536, 64)  # capped, at least one step
    assert plan_size((64, 64), 512, 64, 256) == (256, 256)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({}, "OPTIONS\\['PATH'\\] must name"),
        ({"PATH": "/p", "STEPS": 0}, "'STEPS'\\] must be at least 1"),
        ({"PATH": "/p", "ENABLE_CPU_OFFLOAD": "yes"}, "'ENABLE_CPU_OFFLOAD'\\] must be bool"),
        ({"PATH": "/p", "GUIDANCE_SCALE": -1}, "'GUIDANCE_SCALE'\\] must be at least 0"),
        ({"PATH": "/p", "DTYPE": "float64"}, "'DTYPE'\\] must be 'auto'"),
        ({"PATH": "/p", "SIZE": 5}, "unknown OPTIONS \\['SIZE'\\]"),
    ],
)
def test_bad_options_raise_improperly_configured(options, message):
    with pytest.raises(ImproperlyConfigured, match=message):
        DiffusersImageBackend("x", options)


def test_a_missing_directory_is_named_at_load_time(tmp_path):
    backend = DiffusersImageBackend("x", {"PATH": str(tmp_path / "no-such-model")})
    with pytest.raises(ImproperlyConfigured, match=r"no-such-model.*does not exist"):
        backend.generate([make_brief()], (64, 64))
    with pytest.raises(ImproperlyConfigured, match=r"has no model_index\.json"):
        DiffusersImageBackend("x", {"PATH": str(tmp_path)}).generate([make_brief()], (64, 64))


def test_cpu_offload_needs_cuda(pipeline_dir):
    backend = DiffusersImageBackend(
        "x", {"PATH": str(pipeline_dir), "DEVICE": "cpu", "ENABLE_CPU_OFFLOAD": True}
    )
    with pytest.raises(ImproperlyConfigured, match="ENABLE_CPU_OFFLOAD needs a CUDA device"):
        backend.ensure_loaded()


def test_configured_through_the_registry(aigc, pipeline_dir):
    options = {"PATH": str(pipeline_dir), "STEPS": 4}
    aigc(IMAGE_BACKENDS={"default": {"BACKEND": BACKEND, "OPTIONS": options}})
    backend = image_backend()
    assert isinstance(backend, DiffusersImageBackend)
    assert backend.steps == 4 and backend.pipeline is None  # lazily loaded


@pytest.mark.gpu
def test_bfloat16_on_cuda(pipeline_dir):
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    backend = DiffusersImageBackend("gpu", {"PATH": str(pipeline_dir), "STEPS": 2})
    briefs = [make_brief(seed=1), make_brief(seed=2)]
    images = backend.generate(briefs, (96, 64))
    assert backend.device == "cuda"
    assert backend.pipeline.unet.dtype == torch.bfloat16
    assert backend.pipeline.device.type == "cuda"
    assert [g.image.size for g in images] == [(96, 64)] * 2
    again = backend.generate(briefs, (96, 64))
    for first, second in zip(images, again, strict=True):
        assert (pixels(first.image) - pixels(second.image)).abs().max() <= 2
    backend.close()
    offloaded = DiffusersImageBackend(
        "gpu", {"PATH": str(pipeline_dir), "STEPS": 2, "ENABLE_CPU_OFFLOAD": True}
    )
    assert offloaded.generate(briefs[:1], (96, 64))[0].image.size == (96, 64)
    offloaded.close()


def test_a_missing_extra_says_how_to_install_it(tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "diffusers", None)  # makes "import diffusers" fail
    backend = DiffusersImageBackend("x", {"PATH": str(tmp_path)})
    with pytest.raises(ImproperlyConfigured, match=r"pip install aigc-django\[gpu\]"):
        backend.generate([make_brief()], (64, 64))
