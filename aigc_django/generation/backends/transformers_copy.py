"""Copy from any causal language model in a local directory, through ``transformers``.

Configure it like::

    "COPY_BACKENDS": {
        "default": {
            "BACKEND": "aigc_django.generation.backends.transformers_copy.TransformersCopyBackend",
            "OPTIONS": {"PATH": "/models/Qwen2.5-1.5B-Instruct"},
        },
    }

The model and tokenizer load from ``PATH`` only (``local_files_only``: nothing is ever
downloaded), lazily, once per worker process. Every brief becomes a chat (the tokenizer's
chat template, or a plain format when it has none), all briefs of a batch go through one
left-padded ``model.generate`` call, and replies are parsed, repaired and retried as
:mod:`aigc_django.generation.backends.llm` describes.

Determinism: sampling does not use torch's global random state. Each brief gets its own
``torch.Generator`` seeded with its seed (:func:`~.llm.attempt_seed` of the brief's seed on
retries), and a logits processor draws that row's next token from it; ``generate`` then
runs greedily over the drawn tokens. So a brief's random stream depends on its seed alone,
not on the other briefs of the batch or on what ran before in the worker: the same brief,
seed and model give the same text, whatever batch it is in, up to floating-point differences
(padding changes the shapes of the matrix products; on CUDA in bfloat16 those can change a
token now and then). ``TEMPERATURE: 0`` decodes greedily.
"""

from __future__ import annotations

import gc
import json
import os
from pathlib import Path
from typing import Any

from django.core.exceptions import ImproperlyConfigured

from aigc_django.generation.backends.base import CopyBackend, CopyDraft, torch_device
from aigc_django.generation.backends.llm import (
    check_dtype,
    copy_messages,
    draft_notes,
    files_version,
    missing_extra,
    option_checker,
    resolve_dtype,
    write_copy,
)
from aigc_django.generation.briefs import Brief

OPTIONS = {
    "PATH",
    "DEVICE",
    "DTYPE",
    "MAX_NEW_TOKENS",
    "TEMPERATURE",
    "TOP_P",
    "MAX_ATTEMPTS",
    "BATCH_SIZE",
}
# Files whose names, sizes and times make up the model version.
VERSION_SUFFIXES = (".json", ".safetensors", ".bin", ".model", ".jinja", ".txt", ".tiktoken")


class SeededSampler:
    """A logits processor that samples each row's next token from that row's own generator.

    It returns scores that are 0 for the drawn token and -inf elsewhere, so ``generate``
    must run greedily (``do_sample=False``) after it.
    """

    def __init__(self, seeds: list[int], device: str, temperature: float, top_p: float) -> None:
        import torch

        self.generators = [torch.Generator(device=device).manual_seed(s) for s in seeds]
        self.temperature = temperature
        self.top_p = top_p

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        import torch

        logits = scores.float() / self.temperature
        if self.top_p < 1.0:
            ordered, order = torch.sort(logits, descending=True, dim=-1)
            probs = torch.softmax(ordered, dim=-1)
            # Drop tokens once the mass before them reaches top_p (the first always stays).
            drop = probs.cumsum(dim=-1) - probs >= self.top_p
            ordered = ordered.masked_fill(drop, float("-inf"))
            logits = torch.full_like(logits, float("-inf")).scatter(1, order, ordered)
        probs = torch.softmax(logits, dim=-1)
        chosen = torch.stack(
            [
                torch.multinomial(probs[row], 1, generator=generator)
                for row, generator in enumerate(self.generators)
            ]
        )
        out = torch.full_like(scores, float("-inf"))
        return out.scatter(1, chosen.to(out.device), 0.0)


class TransformersCopyBackend(CopyBackend):
    """Copy from a local causal LM: chat template, JSON replies checked, batched, seeded.

    OPTIONS: ``PATH`` (required: the model directory), ``DEVICE`` ("auto": CUDA when there
    is a GPU), ``DTYPE`` ("auto": bfloat16 on CUDA, float32 elsewhere; or "bfloat16",
    "float16", "float32"), ``MAX_NEW_TOKENS`` (256), ``TEMPERATURE`` (0.7; 0 is greedy),
    ``TOP_P`` (0.9), ``MAX_ATTEMPTS`` (3: tries per brief before a malformed reply is an
    error), ``BATCH_SIZE`` (8: briefs per ``generate`` call).
    """

    name = "transformers"

    def __init__(self, alias: str, options: dict[str, Any]) -> None:
        super().__init__(alias, options)
        check = option_checker("transformers", alias, self.options, OPTIONS)
        path = self.options.get("PATH")
        if not isinstance(path, str | os.PathLike) or not str(path):
            raise ImproperlyConfigured(
                f"transformers backend {alias!r}: OPTIONS['PATH'] must name the local model "
                f"directory, not {path!r}."
            )
        self.path = Path(path)
        self.device_option = check("DEVICE", str, "auto")
        self.dtype_option = check_dtype("transformers", alias, self.options.get("DTYPE", "auto"))
        self.max_new_tokens = check("MAX_NEW_TOKENS", int, 256, 1, 32_768)
        self.temperature = float(check("TEMPERATURE", (int, float), 0.7, 0))
        self.top_p = float(check("TOP_P", (int, float), 0.9, 0.01, 1))
        self.max_attempts = check("MAX_ATTEMPTS", int, 3, 1, 20)
        self.batch_size = check("BATCH_SIZE", int, 8, 1, 1024)
        self.model: Any = None
        self.tokenizer: Any = None
        self.device = ""
        self._version = ""
        self._model_name = ""

    # --- loading -------------------------------------------------------------------------

    def load(self) -> None:
        try:
            import transformers
            from transformers import AutoModelForCausalLM, AutoTokenizer
        except ImportError as exc:
            raise missing_extra("transformers", "gpu") from exc
        if not self.path.is_dir():
            raise ImproperlyConfigured(
                f"transformers backend {self.alias!r}: the model directory {str(self.path)!r} "
                "does not exist. Put the model there (config.json, weights, tokenizer files); "
                "nothing is downloaded."
            )
        if not (self.path / "config.json").is_file():
            raise ImproperlyConfigured(
                f"transformers backend {self.alias!r}: {str(self.path)!r} has no config.json; "
                "is it a saved transformers model directory?"
            )
        self.device = torch_device(self.device_option)
        dtype = resolve_dtype(self.dtype_option, self.device)
        # transformers renamed torch_dtype to dtype in 4.56.
        major, minor = (int(p) for p in transformers.__version__.split(".")[:2])
        dtype_key = "dtype" if (major, minor) >= (4, 56) else "torch_dtype"
        tokenizer = AutoTokenizer.from_pretrained(str(self.path), local_files_only=True)
        tokenizer.padding_side = "left"
        if tokenizer.pad_token is None:
            if tokenizer.eos_token is None:
                raise ImproperlyConfigured(
                    f"transformers backend {self.alias!r}: the tokenizer in {str(self.path)!r} "
                    "has neither a pad nor an end-of-sequence token."
                )
            tokenizer.pad_token = tokenizer.eos_token
        model = AutoModelForCausalLM.from_pretrained(
            str(self.path), local_files_only=True, **{dtype_key: dtype}
        )
        model.to(self.device)
        model.eval()
        self.tokenizer = tokenizer
        self.model = model
        self._version = self._files_version()
        self._model_name = self._name_from_config()

    def close(self) -> None:
        self.model = None
        self.tokenizer = None
        gc.collect()
        try:
            import torch

            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        except ImportError:
            pass
        super().close()

    def _files_version(self) -> str:
        files = [
            p for p in self.path.iterdir() if p.is_file() and p.name.endswith(VERSION_SUFFIXES)
        ]
        return files_version(files)

    def _name_from_config(self) -> str:
        try:
            config = json.loads((self.path / "config.json").read_text())
        except (OSError, ValueError):
            config = {}
        name = str(config.get("_name_or_path") or "")
        # A hub id ("Qwen/Qwen2.5-1.5B-Instruct") says more than a directory; a path does not.
        if name and not name.startswith((".", "/", "~")) and not os.path.isabs(name):
            return name
        return self.path.name

    @property
    def model_name(self) -> str:
        return self._model_name or self.path.name

    @property
    def model_version(self) -> str:
        return self._version

    # --- prompting and generating --------------------------------------------------------

    def prompt(self, brief: Brief) -> str:
        """The text fed to the model for a brief (chat template, or a plain fallback)."""
        messages = copy_messages(brief)
        tokenizer = self.tokenizer
        if getattr(tokenizer, "chat_template", None):
            try:
                return tokenizer.apply_chat_template(
                    messages, tokenize=False, add_generation_prompt=True
                )
            except Exception as exc:
                if "system" not in str(exc).lower():
                    raise
                # Templates without a system role (older Gemma): rules go first in the user turn.
                merged = [
                    {
                        "role": "user",
                        "content": messages[0]["content"] + "\n\n" + messages[1]["content"],
                    }
                ]
                return tokenizer.apply_chat_template(
                    merged, tokenize=False, add_generation_prompt=True
                )
        parts = [f"### {m['role'].capitalize()}\n{m['content']}\n" for m in messages]
        return "\n".join(parts) + "\n### Assistant\n"

    def complete(self, briefs: list[Brief], seeds: list[int] | None = None) -> list[str]:
        """The model's raw replies for ``briefs`` (sampled with ``seeds``, default their own).

        Runs ``generate`` on chunks of ``BATCH_SIZE`` briefs. Loads the model if needed.
        """
        import torch
        from transformers import LogitsProcessorList

        self.ensure_loaded()
        seeds = [b.seed for b in briefs] if seeds is None else list(seeds)
        replies: list[str] = []
        for start in range(0, len(briefs), self.batch_size):
            chunk = briefs[start : start + self.batch_size]
            chunk_seeds = seeds[start : start + self.batch_size]
            texts = [self.prompt(b) for b in chunk]
            # A chat template writes its own BOS; the plain format needs the tokenizer's.
            templated = bool(getattr(self.tokenizer, "chat_template", None))
            inputs = self.tokenizer(
                texts, return_tensors="pt", padding=True, add_special_tokens=not templated
            ).to(self.device)
            config = self._generation_config()
            processors = LogitsProcessorList()
            if self.temperature > 0:
                processors.append(
                    SeededSampler(chunk_seeds, self.device, self.temperature, self.top_p)
                )
            with torch.inference_mode():
                output = self.model.generate(
                    **inputs, generation_config=config, logits_processor=processors
                )
            new_tokens = output[:, inputs["input_ids"].shape[1] :]
            replies += self.tokenizer.batch_decode(new_tokens, skip_special_tokens=True)
        return replies

    def _generation_config(self) -> Any:
        import copy

        config = copy.deepcopy(self.model.generation_config)
        config.do_sample = False
        config.num_beams = 1
        # Sampling happens in SeededSampler; the model's own sampling defaults must not warp.
        config.temperature = None
        config.top_p = None
        config.top_k = None
        config.max_new_tokens = self.max_new_tokens
        config.max_length = None
        config.pad_token_id = self.tokenizer.pad_token_id
        if config.eos_token_id is None:
            config.eos_token_id = self.tokenizer.eos_token_id
        return config

    def _generate(self, briefs: list[Brief]) -> list[CopyDraft]:
        results = write_copy(briefs, self.complete, self.max_attempts, "transformers")
        drafts = []
        for brief, result in zip(briefs, results, strict=True):
            provenance = self.provenance(brief, result.seed)
            notes = draft_notes(result, brief_seed=brief.seed)
            drafts.append(CopyDraft(result.parsed.fields, provenance, notes))
        return drafts
