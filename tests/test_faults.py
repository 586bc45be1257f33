"""Faults, for real: the broker, the database or the cache down while visitors browse, a
missing or corrupt model directory, and CUDA running out of memory.

Every fault is made the way it happens in production, not by mocking the code under test:
services are pointed at a closed port, the database connection is terminated (PostgreSQL)
or refuses every statement (SQLite, which has no server to stop), model files are
overwritten with garbage, and a test backend raises ``torch.cuda.OutOfMemoryError`` for
batches above a size. Each test asserts what a visitor or an editor sees.

A worker killed mid-generation and mid-flush are tested with real Celery workers in
``tests/test_generation_worker.py`` and ``tests/test_celery_worker.py``.
"""

from __future__ import annotations

import contextlib
import logging
import re
import shutil
import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.cache import cache
from django.db import DatabaseError, OperationalError, connection, connections
from django.http import HttpRequest, HttpResponse
from django.template import RequestContext, Template
from django.test import Client, override_settings
from django.urls import include, path

from aigc_django.delivery import cache as delivery_cache
from aigc_django.delivery import counters
from aigc_django.generation import backends, service
from aigc_django.generation.backends.dummy import DummyCopyBackend
from aigc_django.generation.briefs import Brief
from aigc_django.models import Event, GenerationJob, Profile, Segment, Slot, Variant, Visitor
from aigc_django.moderation import review
from aigc_django.profiles.build import ensure_everyone
from aigc_django.tasks import flush_events, generate_variants
from aigc_django.tracking import ingest
from aigc_django.tracking.visitors import set_visitor_cookie
from tests.conftest import BROWSER_UA, closed_port, superuser_client
from tests.shopapp.models import Category
from tests.shopapp.models import Product as ShopProduct

pytestmark = pytest.mark.django_db

DUMMY_COPY = "aigc_django.generation.backends.dummy.DummyCopyBackend"
DUMMY_IMAGE = "aigc_django.generation.backends.dummy.DummyImageBackend"
BUILTIN_COPY = "aigc_django.generation.backends.builtin_copy.BuiltinCopyBackend"
JOBS = "/admin/aigc_django/generationjob/"


@pytest.fixture(autouse=True)
def empty_cache():
    cache.clear()
    delivery_cache.forget_local()
    delivery_cache._outage["seen"] = False
    yield
    cache.clear()
    delivery_cache.forget_local()
    delivery_cache._outage["seen"] = False


# A storefront page with the delivery tags, served at /fault-page/ for these tests only.
PAGE = Template(
    """{% load aigc %}<!doctype html><title>Shop</title>
<div id="banner">{% aigc_banner "home-hero" %}</div>
<h2 id="headline">{% aigc_copy "home-hero" "headline" %}</h2>
<p id="nudge">{% aigc_copy "cart-nudge" "headline" %}</p>
{% aigc_tracking_script %}
"""
)


def page(request: HttpRequest) -> HttpResponse:
    return HttpResponse(PAGE.render(RequestContext(request, {})))


urlpatterns = [path("fault-page/", page), path("", include("tests.urls"))]


# Worker killed mid-generation ----------------------------------------------------------------
# See tests/test_generation_worker.py::test_worker_killed_mid_job_is_replaced_and_the_job_
# finishes_exactly and tests/test_celery_worker.py::test_worker_dying_mid_flush_loses_and_
# duplicates_nothing: real worker processes killed mid-job and mid-flush, exact counts.


# CUDA out of memory ----------------------------------------------------------------------------


class SmallGpuCopyBackend(DummyCopyBackend):
    """The dummy copy backend on a GPU that holds ``MAX_BATCH`` briefs: a bigger batch raises
    ``torch.cuda.OutOfMemoryError``, as CUDA does. Records every batch size it was given."""

    sizes: list[int] = []

    def _generate(self, briefs: list[Brief]) -> list:
        import torch

        type(self).sizes.append(len(briefs))
        if len(briefs) > int(self.options["MAX_BATCH"]):
            raise torch.cuda.OutOfMemoryError(
                f"CUDA out of memory. Tried to allocate {len(briefs) * 512} MiB (GPU 0; "
                "1.00 GiB total capacity)"
            )
        return super()._generate(briefs)


@pytest.fixture
def generation(aigc, settings, tmp_path):
    settings.MEDIA_ROOT = str(tmp_path / "media")
    aigc(
        COPY_BACKENDS={"default": {"BACKEND": DUMMY_COPY, "OPTIONS": {}}},
        IMAGE_BACKENDS={"default": {"BACKEND": DUMMY_IMAGE}},
        GENERATION={"BATCH_SIZE": 8, "RETRY_BACKOFF": 0},
        MODEL_DIR=str(tmp_path / "models"),
    )
    backends.reset()
    shoes = Category.objects.create(slug="running-shoes", name="Running shoes")
    for i in range(6):
        ShopProduct.objects.create(
            sku=f"S{i}",
            name=f"Trail Runner {i}",
            description=f"A light trail shoe, model {i}, with a grippy sole.",
            price=Decimal(f"{80 + i}.90"),
            category=shoes,
        )
    runners = Segment.objects.create(
        key="runners", name="Runners", top_categories=[["running-shoes", 0.9]], top_items=["S1"]
    )
    copy_slot = Slot.objects.create(
        key="home-copy",
        name="Home copy",
        kind=Slot.Kind.COPY,
        copy_fields={"headline": 60, "body": 160, "cta": 24},
        variants_per_segment=8,
    )
    yield {"runners": runners, "slot": copy_slot}
    backends.reset()


def test_cuda_out_of_memory_halves_the_batch_and_the_job_finishes(generation, aigc, caplog):
    SmallGpuCopyBackend.sizes = []
    aigc(
        COPY_BACKENDS={
            "default": {
                "BACKEND": f"{__name__}.SmallGpuCopyBackend",
                "OPTIONS": {"MAX_BATCH": 2},
            }
        }
    )
    job = service.create_job(generation["slot"], generation["runners"], 8)
    with caplog.at_level(logging.WARNING, logger="aigc_django.generation"):
        generate_variants.apply(args=[job.pk])  # the task, as a worker runs it
    # 8 fails, 4 fails, then batches of 2 until the job is done.
    assert SmallGpuCopyBackend.sizes == [8, 4, 2, 2, 2, 2]
    assert "batch size now 4" in caplog.text and "batch size now 2" in caplog.text
    job.refresh_from_db()
    assert job.status == GenerationJob.Status.SUCCEEDED and job.error == ""
    assert sorted(job.variants.values_list("position", flat=True)) == list(range(8))
    assert Variant.objects.filter(slot=generation["slot"]).count() == 8


# A missing or corrupt model directory --------------------------------------------------------


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> dict[str, Path]:
    """Model directories made once for the module (the shop is the same in every test)."""
    return {"folder": tmp_path_factory.mktemp("trained")}


def tiny_copy_model(trained: dict[str, Path]) -> Path:
    """The builtin copy model trained on the test shop (a few seconds, once); its directory."""
    from aigc_django.generation.copymodel.train import train_copy_model

    if "copy" not in trained:
        artifact = train_copy_model(epochs=2, d_model=32, n_layers=1, n_heads=2, device="cpu")
        trained["copy"] = trained["folder"] / "copy"
        shutil.copytree(artifact.path, trained["copy"])
    return trained["copy"]


def corrupt_weights(directory: Path) -> None:
    (directory / "model.safetensors").write_bytes(b"\x00\x01 not a safetensors file" * 8)


def corrupt_config(directory: Path) -> None:
    (directory / "config.json").write_text('{"model": {"vocab_size": ')


def remove_directory(directory: Path) -> None:
    shutil.rmtree(directory)


def job_row(client: Client, job: GenerationJob) -> str:
    """The job's row in the admin's job list."""
    listing = client.get(JOBS).content.decode()
    rows = re.findall(r"<tr>.*?</tr>", listing, re.S)
    found = [row for row in rows if f"{JOBS}{job.pk}/change/" in row]
    assert len(found) == 1, listing
    return found[0]


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (remove_directory, "the directory does not exist"),
        (corrupt_weights, "unreadable files"),
        (corrupt_config, "unreadable files"),
    ],
)
def test_a_broken_model_directory_fails_the_job_clearly_and_a_retry_after_the_fix_succeeds(
    generation, aigc, tmp_path, trained, damage, reason, django_capture_on_commit_callbacks
):
    good = tiny_copy_model(trained)
    model = tmp_path / "copy-model"
    shutil.copytree(good, model)
    aigc(COPY_BACKENDS={"default": {"BACKEND": BUILTIN_COPY, "OPTIONS": {"PATH": str(model)}}})
    damage(model)
    job = service.create_job(generation["slot"], generation["runners"], 3)
    generate_variants.apply(args=[job.pk])

    job.refresh_from_db()
    assert job.status == GenerationJob.Status.FAILED
    assert str(model) in job.error and reason in job.error
    assert job.error.startswith(
        f"JobFailed: the copy backend 'default' (builtin) could not load its model from {model}"
    )
    assert not job.variants.exists()

    # The editor sees it in the admin: the list says failed and why, the page the whole error.
    client = superuser_client()
    row = job_row(client, job)
    assert ">failed</span>" in row
    assert "JobFailed: the copy backend &#x27;default&#x27; (builtin) could not load" in row
    assert reason in row  # the whole first line is the excerpt's tooltip
    change = client.get(f"{JOBS}{job.pk}/change/").content.decode()
    assert reason in change and "aigc_train" in change

    # The model directory is put right; the admin's retry action makes the job succeed.
    shutil.rmtree(model, ignore_errors=True)
    shutil.copytree(good, model)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            JOBS, {"action": "retry_jobs", "_selected_action": [job.pk]}, follow=True
        )
    assert "Queued 1 job again." in response.content.decode()
    job.refresh_from_db()
    assert job.status == GenerationJob.Status.SUCCEEDED and job.error == ""
    assert job.attempts == 2
    assert sorted(job.variants.values_list("position", flat=True)) == [0, 1, 2]
    assert ">succeeded</span>" in job_row(client, job)


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (remove_directory, "does not exist"),
        (corrupt_weights, "SafetensorError: Error while deserializing header"),
        (corrupt_config, "is not a valid JSON file"),
    ],
)
def test_a_broken_transformers_model_directory_fails_the_job_naming_backend_and_directory(
    generation, aigc, tmp_path, trained, damage, reason
):
    pytest.importorskip("transformers")
    from tests.test_transformers_backend import build_model, build_tokenizer

    if "gpt2" not in trained:
        trained["gpt2"] = trained["folder"] / "gpt2"
        tokenizer = build_tokenizer(trained["gpt2"], ["Trail runners for the long run."] * 4)
        build_model(trained["gpt2"], tokenizer).save_pretrained(trained["gpt2"])
    model = tmp_path / "gpt2"
    shutil.copytree(trained["gpt2"], model)
    damage(model)
    backend = "aigc_django.generation.backends.transformers_copy.TransformersCopyBackend"
    aigc(
        COPY_BACKENDS={
            "default": {"BACKEND": backend, "OPTIONS": {"PATH": str(model), "DEVICE": "cpu"}}
        }
    )
    job = service.create_job(generation["slot"], generation["runners"], 2)
    generate_variants.apply(args=[job.pk])
    job.refresh_from_db()
    assert job.status == GenerationJob.Status.FAILED
    assert job.error.startswith(
        "JobFailed: the copy backend 'default' (transformers) could not load its model "
        f"from {model}: "
    )
    assert reason in job.error
    assert reason in superuser_client().get(f"{JOBS}{job.pk}/change/").content.decode()


# The storefront the page tests browse ----------------------------------------------------------


def renditions(tag: str) -> dict[str, dict]:
    files = [
        {
            "name": f"aigc/variants/{tag}/600x200/{w}w.{ext}",
            "width": w,
            "height": w // 3,
            "format": fmt,
        }
        for w in (600, 300)
        for fmt, ext in (("WEBP", "webp"), ("JPEG", "jpg"))
    ]
    return {"600x200": {"width": 600, "height": 200, "files": files, "layout": {}}}


def approved(slot: Slot, segment: Segment, headline: str) -> Variant:
    return Variant.objects.create(
        slot=slot,
        segment=segment,
        status=Variant.Status.APPROVED,
        copy={"headline": headline, "body": f"{headline} body", "cta": "Shop"},
        alt_text=f"Banner: {headline}",
        renditions=renditions(headline.replace(" ", "-").lower())
        if slot.kind == Slot.Kind.BANNER
        else {},
    )


@pytest.fixture
def storefront() -> dict[str, Any]:
    everyone = ensure_everyone()
    runners = Segment.objects.create(key="runners", name="Runners")
    hero = Slot.objects.create(
        key="home-hero",
        name="Home hero",
        sizes=[[600, 200]],
        copy_fields={"headline": 50, "body": 120, "cta": 20},
        link="/store/landing/",
        fallback={"headline": "Fallback hello", "image": "/static/fallback.png"},
    )
    nudge = Slot.objects.create(
        key="cart-nudge",
        name="Nudge",
        kind=Slot.Kind.COPY,
        copy_fields={"headline": 60},
        link="/cart/",
        fallback={"headline": "Your cart misses you"},
    )
    return {
        "runners": runners,
        "hero": hero,
        "runners_hero": approved(hero, runners, "Runners hero"),
        "everyone_hero": approved(hero, everyone, "Everyone hero"),
        "everyone_nudge": approved(nudge, everyone, "Everyone nudge"),
    }


def browser(visitor: uuid.UUID | None = None) -> Client:
    """A person's browser; with ``visitor``, one that carries that visitor's signed cookie.
    It sends the CSRF token the way the tracking script does."""
    client = Client(enforce_csrf_checks=True, headers={"User-Agent": BROWSER_UA})
    if visitor is not None:
        response = HttpResponse()
        set_visitor_cookie(response, visitor)
        client.cookies.update(response.cookies)
    client.cookies["csrftoken"] = "a" * 32
    client.defaults["HTTP_X_CSRFTOKEN"] = "a" * 32
    return client


def runner_visitor(storefront: dict[str, Any]) -> uuid.UUID:
    visitor = Visitor.objects.create()
    Profile.objects.create(visitor=visitor, segment=storefront["runners"])
    return visitor.pk


def shown(client: Client) -> dict[str, str]:
    """The storefront page as the visitor sees it: the banner's alt text, the headline and
    the nudge (after a 200: any other answer fails the test)."""
    response = client.get("/fault-page/")
    assert response.status_code == 200, response.content[:500]
    html = response.content.decode()
    alt = re.search(r'alt="([^"]*)"', html)
    return {
        "banner": alt.group(1) if alt else "",
        "headline": re.search(r'<h2 id="headline">(.*?)</h2>', html, re.S).group(1).strip(),
        "nudge": re.search(r'<p id="nudge">(.*?)</p>', html, re.S).group(1).strip(),
        "html": html,
    }


# The broker down while visitors browse ----------------------------------------------------------


def browse(visitors: int, products: list[str]) -> list[tuple[str, str, str]]:
    """Visitors look at products, open the storefront page and send an event batch from
    the tracking script; every answer must be a success. Returns (visitor id, kind, item)
    of every event they sent."""
    sent = []
    for n in range(visitors):
        visitor = uuid.uuid4()
        client = browser(visitor)
        for sku in products:
            response = client.get(f"/product/{sku}/")
            assert response.status_code == 200 and response.json()["tracked"] is True
            sent.append((str(visitor), "product_view", sku))
        assert client.get("/fault-page/").status_code == 200
        batch = [{"kind": "search", "item": f"q-{n}-{i}"} for i in range(2)]
        response = client.post("/aigc/api/events/", batch, content_type="application/json")
        assert response.status_code == 202, response.content
        sent += [(str(visitor), "search", event["item"]) for event in batch]
    return sent


def stored() -> list[tuple[str, str, str]]:
    return [
        (str(visitor), kind, item)
        for visitor, kind, item in Event.objects.values_list("visitor_id", "kind", "item_key")
    ]


@pytest.fixture
def products() -> list[str]:
    shoes = Category.objects.create(slug="running-shoes", name="Running shoes")
    for i in range(3):
        ShopProduct.objects.create(
            sku=f"P{i}", name=f"Runner {i}", price=Decimal("50.00"), category=shoes
        )
    return ["P0", "P1", "P2"]


@pytest.mark.urls(__name__)
def test_broker_down_while_visitors_browse_loses_no_event(
    aigc, redis_url, broker_down, storefront, products, caplog
):
    aigc(INGEST={"MODE": "buffered", "BUFFER": redis_url, "BATCH_SIZE": 4})
    with caplog.at_level(logging.WARNING, logger="aigc_django.tracking"):
        sent = browse(6, products)
    assert "Celery broker unreachable" in caplog.text
    # Nothing lost while the broker is down: what is not written yet waits in Redis (the
    # first flush of a few seconds ran in the visitor's request).
    waiting = len(ingest.get_buffer())
    assert waiting > 0 and Event.objects.count() + waiting == len(sent)

    broker_down()  # the broker is back, and the beat's next flush runs
    flush_events.delay()
    assert len(ingest.get_buffer()) == 0
    assert sorted(stored()) == sorted(sent)  # every event, each exactly once
    assert len(set(sent)) == len(sent)


@pytest.mark.urls(__name__)
def test_broker_and_buffer_down_while_visitors_browse_write_events_directly(
    aigc, broker_down, storefront, products, caplog
):
    # One Redis as broker and buffer, and it is down: events are written directly.
    aigc(INGEST={"MODE": "buffered", "BUFFER": f"redis://127.0.0.1:{closed_port()}/0"})
    with caplog.at_level(logging.WARNING, logger="aigc_django.tracking"):
        sent = browse(4, products)
    assert "Event buffer unreachable" in caplog.text
    assert sorted(stored()) == sorted(sent)
    assert len(set(sent)) == len(sent)


@pytest.mark.django_db(transaction=True)  # on_commit runs at once, as in a real request
def test_broker_down_while_an_editor_retries_a_job_says_so_and_a_later_retry_works(
    generation, broker_down
):
    job = service.create_job(generation["slot"], generation["runners"], 2)
    service.mark_failed(job.pk, "RuntimeError: the GPU fell over")
    client = superuser_client()
    retry = {"action": "retry_jobs", "_selected_action": [job.pk]}

    response = client.post(JOBS, retry, follow=True)
    assert response.status_code == 200
    assert "Could not send 1 job to the queue: is the Celery broker down?" in (
        response.content.decode()
    )
    job.refresh_from_db()
    assert job.status == GenerationJob.Status.FAILED  # not left "queued" as if on its way
    assert job.error.startswith("Could not send the job to the queue")
    assert ">failed</span>" in job_row(client, job)

    broker_down()  # back (and, in these tests, run at once)
    response = client.post(JOBS, retry, follow=True)
    assert "Queued 1 job again." in response.content.decode()
    job.refresh_from_db()
    assert job.status == GenerationJob.Status.SUCCEEDED and job.variants.count() == 2


@pytest.mark.django_db(transaction=True)  # on_commit runs at once, as in a real request
def test_broker_down_while_an_editor_edits_copy_draws_it_in_the_request(
    generation, broker_down, aigc, caplog
):
    job = service.create_job(generation["slot"], generation["runners"], 1)
    service.run_job(job.pk)
    variant = job.variants.get()
    aigc(BRAND={"BANNED_WORDS": ["cheapest"]})
    editor = User.objects.create_superuser("editor", "editor@example.com", "pw")

    with caplog.at_level(logging.WARNING, logger="aigc_django.moderation"):
        made = review.edit_copy(
            variant, editor, {"headline": "The cheapest trail shoe"}, variant.version
        )
    assert made is not None  # saved, and no 500 for the editor
    assert "drawing it in this request instead" in caplog.text
    variant.refresh_from_db()
    assert variant.copy["headline"] == "The cheapest trail shoe"
    assert variant.status == Variant.Status.PENDING and variant.edited
    # The re-render ran here: the new copy was checked again.
    assert any(flag["code"] == "banned_word" for flag in variant.safety["flags"])


# The database down while a page renders --------------------------------------------------------


@contextlib.contextmanager
def database_down() -> Iterator[None]:
    """The database unreachable for this thread's connection.

    PostgreSQL: the connection is terminated from a second connection
    (``pg_terminate_backend``) and pointed at a closed port, so a reconnect fails too.
    SQLite has no server to stop: every statement raises ``OperationalError``, as a lost
    server does.
    """
    if connection.vendor == "postgresql":
        connection.ensure_connection()
        pid = connection.connection.info.backend_pid
        other = connections.create_connection("default")
        try:
            with other.cursor() as cursor:
                cursor.execute("SELECT pg_terminate_backend(%s)", [pid])
        finally:
            other.close()
        port = connection.settings_dict["PORT"]
        connection.settings_dict["PORT"] = str(closed_port())
        try:
            yield
        finally:
            connection.settings_dict["PORT"] = port
            connection.close()
        return

    def refuse(execute, sql, params, many, context):
        raise OperationalError("unable to open database file (the database is down)")

    with connection.execute_wrapper(refuse):
        yield


def database_is_down() -> bool:
    try:
        Segment.objects.exists()
    except DatabaseError:
        return True
    return False


@pytest.mark.urls(__name__)
@pytest.mark.django_db(transaction=True)
def test_database_down_pages_answer_200_from_the_warm_cache(storefront, caplog):
    runner = browser(runner_visitor(storefront))
    before = shown(runner)
    assert before["banner"] == "Banner: Runners hero"
    assert before["headline"] == "Runners hero" and before["nudge"] == "Everyone nudge"

    with database_down(), caplog.at_level(logging.WARNING, logger="aigc_django"):
        assert database_is_down()
        again = shown(runner)
        # A new visitor's segment cannot be looked up: they see everyone's content.
        newcomer = shown(browser())
    assert {k: again[k] for k in ("banner", "headline", "nudge")} == {
        k: before[k] for k in ("banner", "headline", "nudge")
    }
    assert newcomer["banner"] == "Banner: Everyone hero"
    assert newcomer["headline"] == "Everyone hero" and newcomer["nudge"] == "Everyone nudge"
    assert "Database unreachable" in caplog.text
    assert shown(runner)["headline"] == "Runners hero"  # and after it is back


@pytest.mark.urls(__name__)
@pytest.mark.django_db(transaction=True)
def test_database_down_with_a_cold_cache_renders_the_fallback_content(storefront, caplog):
    runner = browser(runner_visitor(storefront))
    assert shown(runner)["headline"] == "Runners hero"
    # An editor's decision just before the outage: every cached entry is out of date.
    delivery_cache.bump_version()

    with database_down(), caplog.at_level(logging.WARNING, logger="aigc_django"):
        assert database_is_down()
        page = shown(runner)
        newcomer = shown(browser())
    for seen in (page, newcomer):
        assert seen["headline"] == "Fallback hello"
        assert seen["nudge"] == "Your cart misses you"
        assert 'src="/static/fallback.png"' in seen["html"]
        assert "Runners hero" not in seen["html"] and "Everyone hero" not in seen["html"]
    assert "shows its fallback content" in caplog.text
    # Back up: the variants again.
    assert shown(runner)["headline"] == "Runners hero"


@pytest.mark.urls(__name__)
@pytest.mark.django_db(transaction=True)
def test_database_down_and_nothing_known_renders_an_empty_slot_not_an_error(storefront):
    with database_down():
        assert database_is_down()
        page = shown(browser())
    assert page["headline"] == "" and page["nudge"] == "" and page["banner"] == ""
    assert "aigc-config" in page["html"]  # the rest of the page is there


# The cache down ----------------------------------------------------------------------------------


@contextlib.contextmanager
def cache_down() -> Iterator[None]:
    """Django's cache is a Redis at a closed port: every cache call raises ``ConnectionError``
    (connection refused). The test's memory cache keeps what it held, like a Redis that comes
    back after a network failure."""
    unreachable = {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": f"redis://127.0.0.1:{closed_port()}/0",
        "OPTIONS": {"socket_connect_timeout": 1, "socket_timeout": 1},
    }
    with override_settings(CACHES={"default": unreachable}):
        yield


def cache_is_down() -> bool:
    try:
        cache.get("anything")
    except Exception:
        return True
    return False


@pytest.mark.urls(__name__)
def test_cache_down_pages_show_the_right_content_and_decisions_apply_at_once(
    storefront, caplog, django_capture_on_commit_callbacks
):
    runner = browser(runner_visitor(storefront))
    assert shown(runner)["headline"] == "Runners hero"  # the cache is warm

    with cache_down(), caplog.at_level(logging.WARNING, logger="aigc_django"):
        assert cache_is_down()
        page = shown(runner)
        assert page["banner"] == "Banner: Runners hero" and page["headline"] == "Runners hero"
        assert page["nudge"] == "Everyone nudge"
        assert shown(browser())["headline"] == "Everyone hero"
        # An editor rejects the runners' banner while the cache is down: at once, runners see
        # everyone's (the database is read on every request).
        reject(storefront["runners_hero"], django_capture_on_commit_callbacks)
        assert shown(runner)["headline"] == "Everyone hero"
    assert "Cache unreachable" in caplog.text

    # The cache is back with the entries it held before the outage: the rejected variant
    # must not come back with them.
    assert shown(runner)["headline"] == "Everyone hero"
    assert shown(browser(runner_visitor(storefront)))["headline"] == "Everyone hero"


def reject(variant: Variant, on_commit) -> None:
    """An editor rejects the variant (the decision's signals run once it commits)."""
    from aigc_django.moderation import review

    editor = User.objects.create_superuser("editor", "editor@example.com", "pw")
    with on_commit(execute=True):
        review.reject(variant, editor)


@pytest.mark.urls(__name__)
def test_cache_down_impressions_wait_in_the_process_and_clicks_still_count(storefront):
    runner = browser(runner_visitor(storefront))
    variant = storefront["runners_hero"]
    with cache_down():
        assert cache_is_down()
        html = ""
        for _ in range(3):
            html = shown(runner)["html"]
        link = re.search(r'href="(/aigc/r/[^"]+)"', html).group(1)
        response = runner.get(link)
        assert response.status_code == 302 and response["Location"] == "/store/landing/"
    variant.refresh_from_db()
    assert variant.clicks == 1  # written to the database while the cache was down
    assert variant.impressions == 0  # a render never writes to the database

    # Back: the next page view writes the held impressions with its own.
    shown(runner)
    assert counters.pending_counts([variant.pk])[variant.pk] == (4, 0)
    assert not counters._held


@pytest.mark.urls(__name__)
def test_cache_down_the_events_api_and_the_slots_api_still_answer(storefront, aigc):
    aigc(API={"INGEST_RATE": "120/min", "INGEST_RATE_PER_ADDRESS": "1200/min"})
    visitor = runner_visitor(storefront)
    client = browser(visitor)
    with cache_down():
        assert cache_is_down()
        response = client.post(
            "/aigc/api/events/",
            [{"kind": "search", "item": "shoes"}],
            content_type="application/json",
        )
        assert response.status_code == 202, response.content
        slot = client.get("/aigc/api/slots/home-hero/")
        assert slot.status_code == 200, slot.content
        assert slot.json()["copy"]["headline"] == "Runners hero"
    assert Event.objects.filter(visitor_id=visitor, kind="search").count() == 1
