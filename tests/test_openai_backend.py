"""The openai copy backend against a real HTTP server on 127.0.0.1 with scripted answers.

The server implements ``POST /v1/chat/completions`` and records every request, so the tests
see what goes over the wire (model, messages, seed, Authorization) and how the client's
retries, timeouts and the backend's error mapping behave.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.core.exceptions import ImproperlyConfigured

from aigc_django.generation.backends import TransientBackendError, copy_backend
from aigc_django.generation.backends.llm import MalformedCopyError, attempt_seed
from aigc_django.generation.briefs import Brief, Product

pytest.importorskip("openai")

from aigc_django.generation.backends.openai_copy import (
    OpenAICopyBackend,
    OpenAIRequestError,
)

BACKEND = "aigc_django.generation.backends.openai_copy.OpenAICopyBackend"
FIELDS = {"headline": 40, "body": 80, "cta": 20}
VALID = json.dumps(
    {"headline": "Tea for slow mornings", "body": "Green Tea at 4.50.", "cta": "Shop"}
)


def make_brief(segment: str = "tea-fans", seed: int = 7) -> Brief:
    return Brief(
        slot="home-hero",
        segment=segment,
        segment_name=segment.replace("-", " ").title(),
        fields=dict(FIELDS),
        categories=[("tea", "Tea")],
        products=[Product("t1", "Green Tea", "tea", "Tea", 4.5, "Sencha from Shizuoka.")],
        slot_brief="Calm, short.",
        brand_name="Leaf",
        seed=seed,
    )


def completion(content: str | None, model: str = "served-model") -> dict:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 0,
        "model": model,
        "system_fingerprint": "fp_test",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
    }


class Server:
    """A chat-completions server answering from a script: a function of the request."""

    def __init__(self) -> None:
        self.requests: list[dict] = []
        self.lock = threading.Lock()
        self.script = lambda request, index: (200, completion(VALID), 0.0)
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                body = json.loads(self.rfile.read(length) or b"{}")
                headers = {k.lower(): v for k, v in self.headers.items()}
                request = {"path": self.path, "headers": headers, "json": body}
                with server.lock:
                    server.requests.append(request)
                    index = len(server.requests) - 1
                status, payload, delay = server.script(request, index)
                if delay:
                    time.sleep(delay)
                data = json.dumps(payload).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    # Tells the client's retry to wait 10 ms instead of its backoff.
                    self.send_header("retry-after-ms", "10")
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.httpd.block_on_close = False
        self.url = f"http://127.0.0.1:{self.httpd.server_port}/v1"
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


@pytest.fixture
def server():
    server = Server()
    yield server
    server.close()


def make_backend(server: Server, **options) -> OpenAICopyBackend:
    values = {"BASE_URL": server.url, "MODEL": "test-model", "API_KEY": "sk-test", **options}
    return OpenAICopyBackend("test", values)


def reply_for(request) -> str:
    """A valid reply naming the brief's segment, so tests can tell replies apart."""
    facts = json.loads(request["json"]["messages"][1]["content"].removeprefix("Brief:\n"))
    return json.dumps({"headline": f"For {facts['segment']}", "body": "Tea.", "cta": "Shop"})


def test_valid_replies_become_drafts_and_the_request_carries_the_brief(server):
    server.script = lambda request, index: (200, completion(reply_for(request)), 0.0)
    backend = make_backend(server, RESPONSE_FORMAT_JSON=True, TEMPERATURE=0.2, MAX_TOKENS=99)
    briefs = [make_brief("tea-fans", seed=7), make_brief("coffee-fans", seed=8)]
    drafts = backend.generate(briefs)
    assert [d.fields["headline"] for d in drafts] == ["For Tea Fans", "For Coffee Fans"]
    assert drafts[0].fields == {"headline": "For Tea Fans", "body": "Tea.", "cta": "Shop"}
    provenance = drafts[1].provenance
    assert provenance.backend == "openai" and provenance.model == "test-model"
    assert provenance.version == "served-model/fp_test"
    assert provenance.seed == 8 and provenance.brief_hash == briefs[1].hash
    assert drafts[1].notes["attempts"] == 1 and drafts[1].notes["finish_reason"] == "stop"

    assert len(server.requests) == 2
    by_seed = {r["json"]["seed"]: r for r in server.requests}
    assert set(by_seed) == {7, 8}
    request = by_seed[7]
    assert request["path"] == "/v1/chat/completions"
    assert request["headers"]["authorization"] == "Bearer sk-test"
    body = request["json"]
    assert body["model"] == "test-model"
    assert body["temperature"] == 0.2 and body["max_tokens"] == 99
    assert body["response_format"] == {"type": "json_object"}
    system, user = body["messages"]
    assert system["role"] == "system" and '"headline" (40)' in system["content"]
    facts = json.loads(user["content"].removeprefix("Brief:\n"))
    assert facts["segment"] == "Tea Fans"
    assert facts["products"][0]["title"] == "Green Tea" and facts["products"][0]["price"] == "4.50"


def test_malformed_replies_are_repaired_or_asked_again(server):
    def script(request, index):
        if request["json"]["seed"] == 7:  # the first attempt's seed: a reply beyond repair
            return 200, completion("Sure! I'd love to help with that."), 0.0
        return 200, completion("```json\n" + VALID[:-1] + ",}\n```"), 0.0

    server.script = script
    backend = make_backend(server)
    [draft] = backend.generate([make_brief(seed=7)])
    assert draft.fields["headline"] == "Tea for slow mornings"
    assert draft.notes["attempts"] == 2
    assert "code fence" in draft.notes["repairs"] and "trailing comma" in draft.notes["repairs"]
    assert [r["json"]["seed"] for r in server.requests] == [7, attempt_seed(7, 1)]
    assert draft.provenance.seed == attempt_seed(7, 1) and draft.notes["brief_seed"] == 7


def test_replies_malformed_on_every_attempt_raise_naming_the_brief(server):
    server.script = lambda request, index: (200, completion(None), 0.0)
    backend = make_backend(server, MAX_ATTEMPTS=2)
    with pytest.raises(MalformedCopyError, match="segment 'tea-fans'") as info:
        backend.generate([make_brief()])
    assert info.value.failures[0]["attempts"] == 2
    assert len(server.requests) == 2


def test_a_server_error_then_success_is_retried_by_the_client(server):
    server.script = lambda request, index: (
        (500, {"error": {"message": "busy"}}, 0.0) if index == 0 else (200, completion(VALID), 0.0)
    )
    backend = make_backend(server, MAX_RETRIES=2)
    [draft] = backend.generate([make_brief()])
    assert draft.fields["cta"] == "Shop"
    assert len(server.requests) == 2


def test_a_server_that_stays_unavailable_is_transient(server):
    server.script = lambda request, index: (503, {"error": {"message": "overloaded"}}, 0.0)
    backend = make_backend(server, MAX_RETRIES=2)
    start = time.perf_counter()
    with pytest.raises(TransientBackendError, match="answered 503 after 2 retries: overloaded"):
        backend.generate([make_brief()])
    assert time.perf_counter() - start < 5
    assert len(server.requests) == 3  # the first try and two retries


def test_rate_limits_are_transient(server):
    server.script = lambda request, index: (429, {"error": {"message": "slow down"}}, 0.0)
    with pytest.raises(TransientBackendError, match="429"):
        make_backend(server, MAX_RETRIES=0).generate([make_brief()])


def test_a_slow_server_times_out_quickly_as_transient(server):
    server.script = lambda request, index: (200, completion(VALID), 1.5)
    backend = make_backend(server, TIMEOUT=0.2, MAX_RETRIES=0)
    start = time.perf_counter()
    with pytest.raises(TransientBackendError, match=r"did not answer.*Timeout"):
        backend.generate([make_brief()])
    assert time.perf_counter() - start < 1.2


def test_a_refused_connection_is_transient():
    import socket

    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    backend = OpenAICopyBackend(
        "x", {"BASE_URL": f"http://127.0.0.1:{port}/v1", "MODEL": "m", "MAX_RETRIES": 0}
    )
    with pytest.raises(TransientBackendError, match="did not answer"):
        backend.generate([make_brief()])


def test_a_bad_request_is_a_clear_error_not_retried(server):
    server.script = lambda request, index: (
        400,
        {"error": {"message": "This model's maximum context length is 8 tokens"}},
        0.0,
    )
    backend = make_backend(server, MAX_RETRIES=3)
    with pytest.raises(
        OpenAIRequestError,
        match="refused the request for model 'test-model' "
        "with 400: This model's maximum context length",
    ) as info:
        backend.generate([make_brief()])
    assert info.value.status == 400
    assert not isinstance(info.value, TransientBackendError)
    assert len(server.requests) == 1


def test_briefs_are_sent_concurrently(server):
    active = []
    peak = []
    lock = threading.Lock()

    def script(request, index):
        with lock:
            active.append(index)
            peak.append(len(active))
        time.sleep(0.15)
        with lock:
            active.remove(index)
        return 200, completion(reply_for(request)), 0.0

    server.script = script
    backend = make_backend(server, CONCURRENCY=3)
    briefs = [make_brief(f"segment-{i}", seed=i) for i in range(6)]
    drafts = backend.generate(briefs)
    assert [d.fields["headline"] for d in drafts] == [f"For Segment {i}" for i in range(6)]
    assert max(peak) == 3


def test_the_key_can_come_from_the_environment(server, monkeypatch):
    monkeypatch.setenv("AIGC_TEST_LLM_KEY", "sk-env")
    make_backend(server, API_KEY=None, API_KEY_ENV="AIGC_TEST_LLM_KEY").generate([make_brief()])
    assert server.requests[-1]["headers"]["authorization"] == "Bearer sk-env"
    monkeypatch.delenv("AIGC_TEST_LLM_KEY")
    backend = make_backend(server, API_KEY=None, API_KEY_ENV="AIGC_TEST_LLM_KEY")
    with pytest.raises(ImproperlyConfigured, match="'AIGC_TEST_LLM_KEY' named by API_KEY_ENV"):
        backend.generate([make_brief()])


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"MODEL": "m"}, "OPTIONS\\['BASE_URL'\\] must be"),
        ({"BASE_URL": "127.0.0.1:8000", "MODEL": "m"}, "OPTIONS\\['BASE_URL'\\] must be"),
        ({"BASE_URL": "http://h/v1"}, "OPTIONS\\['MODEL'\\] must name"),
        ({"BASE_URL": "http://h/v1", "MODEL": "m", "TIMEOUT": 0}, "'TIMEOUT'\\] must be at least"),
        ({"BASE_URL": "http://h/v1", "MODEL": "m", "CONCURRENCY": 0}, "'CONCURRENCY'\\]"),
        ({"BASE_URL": "http://h/v1", "MODEL": "m", "RESPONSE_FORMAT_JSON": 1}, "must be bool"),
        ({"BASE_URL": "http://h/v1", "MODEL": "m", "API_KEY": "a", "API_KEY_ENV": "B"}, "not both"),
        ({"BASE_URL": "http://h/v1", "MODEL": "m", "KEY": "a"}, "unknown OPTIONS \\['KEY'\\]"),
    ],
)
def test_bad_options_raise_improperly_configured(options, message):
    with pytest.raises(ImproperlyConfigured, match=message):
        OpenAICopyBackend("x", options)


def test_configured_through_the_registry(aigc, server):
    options = {"BASE_URL": server.url, "MODEL": "m"}
    aigc(COPY_BACKENDS={"default": {"BACKEND": BACKEND, "OPTIONS": options}})
    backend = copy_backend()
    assert isinstance(backend, OpenAICopyBackend) and backend.client is None
    backend.generate([make_brief()])
    assert server.requests[0]["headers"]["authorization"] == "Bearer unused"


def test_a_missing_extra_says_how_to_install_it(server, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "openai", None)  # makes "import openai" fail
    with pytest.raises(ImproperlyConfigured, match=r"pip install aigc-django\[openai\]"):
        make_backend(server).generate([make_brief()])
