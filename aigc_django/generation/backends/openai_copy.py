"""Copy from any OpenAI-compatible chat server: vLLM, TGI, Ollama, llama.cpp, OpenAI.

Configure it like::

    "COPY_BACKENDS": {
        "default": {
            "BACKEND": "aigc_django.generation.backends.openai_copy.OpenAICopyBackend",
            "OPTIONS": {
                "BASE_URL": "http://127.0.0.1:8000/v1",   # vLLM's OpenAI server
                "MODEL": "Qwen/Qwen2.5-7B-Instruct",
                "RESPONSE_FORMAT_JSON": True,
            },
        },
    }

Each brief is one ``POST {BASE_URL}/chat/completions`` with the same messages the
``transformers`` backend uses (:func:`~.llm.copy_messages`) and the brief's seed as ``seed``;
``CONCURRENCY`` briefs are in flight at once. Replies are parsed, repaired and retried as
:mod:`aigc_django.generation.backends.llm` describes.

Failures: the client retries timeouts, connection errors, 408, 409, 429 and 5xx answers
``MAX_RETRIES`` times with backoff (and the server's ``Retry-After``); after that they raise
:class:`~.base.TransientBackendError`, which the generation task retries later with its
own backoff. Other 4xx answers (a bad key, an unknown model, a prompt too long) raise
:class:`OpenAIRequestError`, which is not retried: they need a person.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from typing import Any

from django.core.exceptions import ImproperlyConfigured

from aigc_django.generation.backends.base import CopyBackend, CopyDraft, TransientBackendError
from aigc_django.generation.backends.llm import (
    copy_messages,
    draft_notes,
    missing_extra,
    option_checker,
    write_copy,
)
from aigc_django.generation.briefs import Brief

OPTIONS = {
    "BASE_URL",
    "MODEL",
    "API_KEY",
    "API_KEY_ENV",
    "TIMEOUT",
    "MAX_RETRIES",
    "TEMPERATURE",
    "MAX_TOKENS",
    "RESPONSE_FORMAT_JSON",
    "CONCURRENCY",
    "MAX_ATTEMPTS",
}
# Status codes worth asking again later (the client retries these too).
TRANSIENT_STATUSES = {408, 409, 429}
# Sent when no key is configured: servers without authentication ignore it.
NO_KEY = "unused"


class OpenAIRequestError(RuntimeError):
    """The server refused a request for a reason that retrying will not fix (4xx)."""

    def __init__(self, status: int, message: str) -> None:
        self.status = status
        super().__init__(message)


class OpenAICopyBackend(CopyBackend):
    """Copy from an OpenAI-compatible ``/chat/completions`` endpoint.

    OPTIONS: ``BASE_URL`` (required, e.g. "http://127.0.0.1:8000/v1"), ``MODEL`` (required),
    ``API_KEY`` or ``API_KEY_ENV`` (the name of an environment variable holding the key; read
    when the backend loads), ``TIMEOUT`` (60 seconds per request), ``MAX_RETRIES`` (2, by
    the client, per request), ``TEMPERATURE`` (0.7), ``MAX_TOKENS`` (256),
    ``RESPONSE_FORMAT_JSON`` (False: send ``response_format={"type": "json_object"}``, for
    servers that support it), ``CONCURRENCY`` (4 requests at once), ``MAX_ATTEMPTS`` (3 tries
    per brief before a malformed reply is an error).
    """

    name = "openai"

    def __init__(self, alias: str, options: dict[str, Any]) -> None:
        super().__init__(alias, options)
        check = option_checker("openai", alias, self.options, OPTIONS)
        base_url = self.options.get("BASE_URL")
        if not isinstance(base_url, str) or not base_url.startswith(("http://", "https://")):
            raise ImproperlyConfigured(
                f"openai backend {alias!r}: OPTIONS['BASE_URL'] must be the server's http(s) "
                f"URL, e.g. 'http://127.0.0.1:8000/v1', not {base_url!r}."
            )
        model = self.options.get("MODEL")
        if not isinstance(model, str) or not model.strip():
            raise ImproperlyConfigured(
                f"openai backend {alias!r}: OPTIONS['MODEL'] must name the model the server "
                f"serves, not {model!r}."
            )
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.api_key = check("API_KEY", str, None)
        self.api_key_env = check("API_KEY_ENV", str, None)
        if self.api_key is not None and self.api_key_env is not None:
            raise ImproperlyConfigured(
                f"openai backend {alias!r}: give API_KEY or API_KEY_ENV, not both."
            )
        self.timeout = float(check("TIMEOUT", (int, float), 60, 0.01))
        self.max_retries = check("MAX_RETRIES", int, 2, 0, 20)
        self.temperature = float(check("TEMPERATURE", (int, float), 0.7, 0, 2))
        self.max_tokens = check("MAX_TOKENS", int, 256, 1, 1_000_000)
        self.json_format = check("RESPONSE_FORMAT_JSON", bool, False)
        self.concurrency = check("CONCURRENCY", int, 4, 1, 256)
        self.max_attempts = check("MAX_ATTEMPTS", int, 3, 1, 20)
        self.client: Any = None
        # What the server said about each reply, by (brief hash, seed), for provenance.
        self._replies: dict[tuple[str, int], dict[str, Any]] = {}
        self._replies_lock = threading.Lock()

    def load(self) -> None:
        try:
            import openai
        except ImportError as exc:
            raise missing_extra("openai", "openai") from exc
        key = self.api_key
        if self.api_key_env is not None:
            key = os.environ.get(self.api_key_env)
            if not key:
                raise ImproperlyConfigured(
                    f"openai backend {self.alias!r}: the environment variable "
                    f"{self.api_key_env!r} named by API_KEY_ENV is not set."
                )
        self.client = openai.OpenAI(
            base_url=self.base_url,
            api_key=key or NO_KEY,
            timeout=self.timeout,
            max_retries=self.max_retries,
        )

    def close(self) -> None:
        if self.client is not None:
            self.client.close()
        self.client = None
        super().close()

    @property
    def model_name(self) -> str:
        return self.model

    def request(self, brief: Brief, seed: int) -> dict[str, Any]:
        """The keyword arguments of ``chat.completions.create`` for one brief."""
        kwargs: dict[str, Any] = {
            "model": self.model,
            "messages": copy_messages(brief),
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
            "seed": seed,
        }
        if self.json_format:
            kwargs["response_format"] = {"type": "json_object"}
        return kwargs

    def _ask(self, brief: Brief, seed: int) -> str:
        import openai

        try:
            response = self.client.chat.completions.create(**self.request(brief, seed))
        except openai.APIConnectionError as exc:  # timeouts included
            raise TransientBackendError(
                f"openai backend {self.alias!r}: {self.base_url} did not answer "
                f"({type(exc).__name__}: {exc}) after {self.max_retries} retries"
            ) from exc
        except openai.APIStatusError as exc:
            status = exc.status_code
            detail = _error_detail(exc)
            if status in TRANSIENT_STATUSES or status >= 500:
                raise TransientBackendError(
                    f"openai backend {self.alias!r}: {self.base_url} answered {status} "
                    f"after {self.max_retries} retries: {detail}"
                ) from exc
            raise OpenAIRequestError(
                status,
                f"openai backend {self.alias!r}: {self.base_url} refused the request for model "
                f"{self.model!r} with {status}: {detail}",
            ) from exc
        choice = response.choices[0] if response.choices else None
        content = (choice.message.content if choice is not None else None) or ""
        usage = getattr(response, "usage", None)
        meta = {
            "server_model": getattr(response, "model", "") or "",
            "fingerprint": getattr(response, "system_fingerprint", None) or "",
            "finish_reason": getattr(choice, "finish_reason", None),
            "completion_tokens": getattr(usage, "completion_tokens", None),
        }
        with self._replies_lock:
            self._replies[(brief.hash, seed)] = meta
        return content

    def complete(self, briefs: list[Brief], seeds: list[int] | None = None) -> list[str]:
        """The server's raw replies for ``briefs``, ``CONCURRENCY`` requests at a time.

        The first request error stops the batch: requests not yet sent are cancelled and the
        error is raised.
        """
        self.ensure_loaded()
        seeds = [b.seed for b in briefs] if seeds is None else list(seeds)
        if len(briefs) == 1 or self.concurrency == 1:
            return [self._ask(b, s) for b, s in zip(briefs, seeds, strict=True)]
        pool = ThreadPoolExecutor(
            max_workers=min(self.concurrency, len(briefs)), thread_name_prefix="aigc-openai"
        )
        try:
            futures = [pool.submit(self._ask, b, s) for b, s in zip(briefs, seeds, strict=True)]
            wait(futures, return_when=FIRST_EXCEPTION)
            for future in futures:
                if future.done() and future.exception() is not None:
                    raise future.exception()
            return [future.result() for future in futures]
        finally:
            pool.shutdown(wait=True, cancel_futures=True)

    def _generate(self, briefs: list[Brief]) -> list[CopyDraft]:
        with self._replies_lock:
            self._replies.clear()
        results = write_copy(briefs, self.complete, self.max_attempts, "openai")
        drafts = []
        for brief, result in zip(briefs, results, strict=True):
            meta = self._replies.get((brief.hash, result.seed), {})
            provenance = self.provenance(brief, result.seed)
            # The server's own name for what answered (e.g. a dated snapshot), and its build.
            provenance.version = "/".join(
                part for part in (meta.get("server_model"), meta.get("fingerprint")) if part
            )
            notes = draft_notes(
                result,
                brief_seed=brief.seed,
                finish_reason=meta.get("finish_reason"),
                completion_tokens=meta.get("completion_tokens"),
            )
            drafts.append(CopyDraft(result.parsed.fields, provenance, notes))
        return drafts


def _error_detail(exc: Any) -> str:
    """The server's error message from an APIStatusError, short."""
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        error = body.get("error", body)
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])[:300]
        if isinstance(error, str):
            return error[:300]
    return str(getattr(exc, "message", exc))[:300]
