"""Feedback stage: cached counters and their flush, signed click links, the feedback API,
conversions, the bandit, and clicked copy in the copy model's corpus."""

from __future__ import annotations

import json
import random
import time
import uuid
from datetime import UTC, datetime, timedelta
from unittest import mock

import pytest
from django.core import signing
from django.core.cache import cache
from django.core.management import call_command
from django.db.models import QuerySet
from django.test import Client

from aigc_django import tasks
from aigc_django.delivery import bandit, clicks, counters
from aigc_django.generation.copymodel.corpus import (
    APPROVED_WEIGHT,
    MAX_CLICK_BONUS,
    approved_weight,
    build_corpus,
)
from aigc_django.models import Event, IngestBatch, Segment, Slot, Variant
from aigc_django.moderation.stats import click_through
from aigc_django.tracking.track import track
from tests.conftest import BROWSER_UA

FEEDBACK = "/aigc/api/feedback/"
# A moment well inside a bucket that is closed for flush_counters(now=LATER).
EARLIER = 1_700_000_000.0
LATER = EARLIER + 3 * counters.BUCKET_SECONDS


@pytest.fixture(autouse=True)
def _empty_cache():
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def variants(db) -> list[Variant]:
    everyone, _ = Segment.objects.get_or_create(key="everyone", defaults={"name": "Everyone"})
    slot = Slot.objects.create(
        key="home-hero", name="Home hero", kind=Slot.Kind.COPY, copy_fields={"headline": 40}
    )
    return [
        Variant.objects.create(
            slot=slot,
            segment=everyone,
            status=Variant.Status.APPROVED,
            copy={"headline": f"Run further {word}"},
        )
        for word in ("today", "tonight")
    ]


def fresh(variant: Variant) -> tuple[int, int, int]:
    variant.refresh_from_db()
    return variant.impressions, variant.clicks, variant.conversions


def browser(**headers: str) -> Client:
    """A visitor's browser with its visitor cookie, sending Origin like sendBeacon does."""
    client = Client(headers={"User-Agent": BROWSER_UA, "Origin": "http://testserver", **headers})
    client.get("/plain/")
    return client


def visitor_of(client: Client) -> uuid.UUID:
    from django.http import HttpRequest

    from aigc_django.tracking.visitors import read_visitor_cookie

    request = HttpRequest()
    request.COOKIES = {name: morsel.value for name, morsel in client.cookies.items()}
    visitor_id = read_visitor_cookie(request)
    assert visitor_id is not None
    return visitor_id


# The bandit


def test_thompson_pick_prefers_the_better_arm_and_still_explores():
    rng = random.Random(7)
    counts = {1: (400, 20), 2: (400, 80)}  # 5% against 20% click-through
    picks = [bandit.thompson_pick([1, 2], counts, rng) for _ in range(2000)]
    assert picks.count(2) > 1950
    # Without data the arms are drawn about evenly: the first is not favoured.
    even = [bandit.thompson_pick([1, 2], {}, rng) for _ in range(2000)]
    assert 850 < even.count(1) < 1150
    # A new arm next to a proven poor one still gets shown.
    new = [bandit.thompson_pick([1, 3], {1: (1000, 10)}, rng) for _ in range(500)]
    assert new.count(3) > 400
    with pytest.raises(ValueError):
        bandit.thompson_pick([], counts, rng)


def test_vectorised_picks_agree_with_the_posteriors():
    generator = __import__("numpy").random.default_rng(1)
    picks = bandit.thompson_pick_many([400, 400, 400], [20, 80, 40], 3000, generator)
    shares = [(picks == arm).mean() for arm in range(3)]
    assert shares[1] > 0.95 and shares[0] < 0.01


# Counters and their flush


def test_pending_counts_come_from_one_get_many_without_queries(variants, django_assert_num_queries):
    first, second = (v.pk for v in variants)
    counters.record_impressions([first, second, second])
    counters.record_click(second)
    with (
        django_assert_num_queries(0),
        mock.patch.object(cache, "get_many", wraps=cache.get_many) as get_many,
    ):
        pending = counters.pending_counts([first, second, 999])
    assert get_many.call_count == 1
    assert pending == {first: (1, 0), second: (2, 1), 999: (0, 0)}


def test_impressions_are_batched_per_process_and_never_lost(variants, aigc):
    aigc(DELIVERY={"IMPRESSION_BATCH_SECONDS": 3600})
    first, second = (v.pk for v in variants)
    counters.record_impressions([first])
    with mock.patch.object(cache, "incr", wraps=cache.incr) as incr:
        for _ in range(5):
            counters.record_impressions([first, second])
    assert incr.call_count == 0  # held in the process: no cache write per page
    assert counters.pending_counts([first, second]) == {first: (6, 0), second: (5, 0)}
    counters.flush_held_impressions()  # at exit, or when the batch time has passed
    assert counters._held == {}
    assert counters.pending_counts([first, second]) == {first: (6, 0), second: (5, 0)}
    assert counters.flush_counters(now=time.time() + 3 * counters.BUCKET_SECONDS) == 11
    first_row, second_row = Variant.objects.filter(pk__in=[first, second]).order_by("pk")
    assert (first_row.impressions, second_row.impressions) == (6, 5)


def test_flush_moves_closed_buckets_once(variants):
    first, second = variants
    counters.record_impressions([first.pk, second.pk, second.pk], at=EARLIER)
    counters.record_click(second.pk, at=EARLIER)
    counters.record_conversion(second.pk, at=EARLIER)
    # The bucket is still open a few seconds later: nothing moves yet.
    assert counters.flush_counters(now=EARLIER + 5) == 0
    assert fresh(second) == (0, 0, 0)

    assert counters.flush_counters(now=LATER) == 5
    assert fresh(first) == (1, 0, 0)
    assert fresh(second) == (2, 1, 1)
    assert counters.pending_counts([second.pk], now=EARLIER)[second.pk] == (0, 0)
    # Flushing again adds nothing.
    assert counters.flush_counters(now=LATER) == 0
    assert fresh(second) == (2, 1, 1)


def test_a_flusher_dying_before_its_commit_leaves_the_bucket_for_the_next(variants):
    first, second = variants
    counters.record_impressions([first.pk, second.pk], at=EARLIER)
    real_update = QuerySet.update
    calls = []

    def update_then_die(queryset, **kwargs):
        calls.append(kwargs)
        if len(calls) == 2:
            raise RuntimeError("worker killed")
        return real_update(queryset, **kwargs)

    with (
        mock.patch.object(QuerySet, "update", update_then_die),
        pytest.raises(RuntimeError),
    ):
        counters.flush_counters(now=LATER)
    # The first variant's update was rolled back with the rest.
    assert fresh(first) == (0, 0, 0)
    assert not IngestBatch.objects.exists()

    assert counters.flush_counters(now=LATER) == 2
    assert fresh(first) == (1, 0, 0) and fresh(second) == (1, 0, 0)


def test_a_flusher_dying_after_its_commit_does_not_count_twice(variants):
    first = variants[0]
    counters.record_impressions([first.pk] * 3, at=EARLIER)
    counters.record_click(first.pk, at=EARLIER)
    with (
        mock.patch.object(counters, "forget_bucket", side_effect=RuntimeError("killed")),
        pytest.raises(RuntimeError),
    ):
        counters.flush_counters(now=LATER)
    assert fresh(first) == (3, 1, 0)
    # The keys are still in the cache, but the bucket's row says it was applied.
    assert counters.pending_counts([first.pk], now=EARLIER)[first.pk] == (3, 1)

    assert counters.flush_counters(now=LATER) == 0
    assert fresh(first) == (3, 1, 0)
    assert counters.pending_counts([first.pk], now=EARLIER)[first.pk] == (0, 0)


def test_two_flushers_racing_on_one_bucket_count_it_once(variants):
    first = variants[0]
    counters.record_impressions([first.pk, first.pk], at=EARLIER)
    bucket = counters.current_bucket(EARLIER)
    # Flusher B reads the bucket, then flusher A flushes everything, then B applies.
    read_by_b = counters.read_bucket(bucket, [first.pk])
    assert counters.flush_counters(now=LATER) == 2
    assert counters.apply_bucket(bucket, read_by_b) == 0
    assert fresh(first) == (2, 0, 0)


def test_a_straggler_into_a_flushed_bucket_is_dropped_as_documented(variants):
    first = variants[0]
    counters.record_impressions([first.pk], at=EARLIER)
    counters.flush_counters(now=LATER)
    # A writer paused for minutes increments the old bucket: at-most-once for it.
    counters.record_impressions([first.pk], at=EARLIER)
    counters.record_impressions([first.pk], at=LATER - counters.BUCKET_SECONDS * 2)
    assert counters.flush_counters(now=LATER + counters.BUCKET_SECONDS) == 1
    assert fresh(first) == (2, 0, 0)


def test_the_flush_task_feeds_the_dashboard(variants):
    first, second = variants
    long_ago = time.time() - 10 * counters.BUCKET_SECONDS
    counters.record_impressions([first.pk] * 40 + [second.pk] * 40, at=long_ago)
    for _ in range(10):
        counters.record_click(second.pk, at=long_ago)
    assert "aigc-flush-feedback" in tasks.beat_schedule()
    assert tasks.flush_feedback.delay().get() == 90
    rows, _ = click_through()
    by_id = {row.variant.pk: row for row in rows}
    assert (by_id[second.pk].impressions, by_id[second.pk].clicks) == (40, 10)
    assert by_id[first.pk].clicks == 0
    assert by_id[second.pk].interval.low > by_id[first.pk].interval.high


def test_flush_command_can_include_the_open_minute(variants):
    counters.record_impressions([variants[0].pk])
    call_command("aigc_flush_feedback", stdout=(out := __import__("io").StringIO()))
    assert fresh(variants[0])[0] == 0 and "Flushed 0" in out.getvalue()
    call_command("aigc_flush_feedback", "--include-open", stdout=out)
    assert fresh(variants[0])[0] == 1 and "Flushed 1" in out.getvalue()


# Signed click links


def test_click_link_counts_one_click_and_redirects(variants):
    variant = variants[0]
    url = clicks.click_url(variant.pk, "home-hero", "/sale/?from=hero")
    assert url.startswith("/aigc/r/")
    client = browser()
    response = client.get(url)
    assert response.status_code == 302
    assert response["Location"] == "/sale/?from=hero"
    assert counters.pending_counts([variant.pk])[variant.pk] == (0, 1)
    event = Event.objects.get(kind="click")
    assert event.properties["slot"] == "home-hero"
    assert event.properties["variant"] == variant.pk
    # Link checkers (HEAD) and Do-Not-Track visitors are redirected but not counted.
    assert client.head(url).status_code == 302
    assert browser(DNT="1").get(url).status_code == 302
    assert counters.pending_counts([variant.pk])[variant.pk] == (0, 1)
    assert Event.objects.filter(kind="click").count() == 1


def test_tampered_and_foreign_click_tokens_are_refused(variants, settings):
    token = clicks.sign_click(variants[0].pk, "home-hero", "/sale/")
    payload, signature = token.rsplit(":", 1)
    forged = (
        signing.Signer(salt=clicks.CLICK_SALT)
        .sign_object({"v": variants[1].pk, "s": "home-hero", "t": "/sale/"})
        .rsplit(":", 1)[0]
    )
    client = browser()
    assert client.get(f"/aigc/r/{forged}:{signature}/").status_code == 400
    assert client.get(f"/aigc/r/{payload}:{'A' * len(signature)}/").status_code == 400
    other_salt = signing.Signer(salt="another-app").sign_object({"v": 1, "s": "x", "t": "/"})
    assert client.get(f"/aigc/r/{other_salt}/").status_code == 400
    settings.SECRET_KEY = "another-site-" + "x" * 40
    foreign = clicks.sign_click(variants[0].pk, "home-hero", "/sale/")
    settings.SECRET_KEY = "django-insecure-restored-" + "y" * 40
    assert client.get(f"/aigc/r/{foreign}/").status_code == 400
    assert counters.pending_counts([variants[0].pk])[variants[0].pk] == (0, 0)


@pytest.mark.parametrize(
    "target",
    [
        "//evil.com/",
        "https://evil.com/",
        "/\\evil.com",
        "\\\\evil.com",
        "javascript:alert(1)",
        "sale/",
        "http:///evil.com",
        "https://user@shop.example/",
        "ftp://shop.example/",
        "/sale/\nSet-Cookie: x=1",
    ],
)
def test_unsafe_targets_cannot_be_signed(target, settings):
    settings.ALLOWED_HOSTS = ["shop.example", "*"]
    with pytest.raises(clicks.UnsafeTarget):
        clicks.click_url(1, "home-hero", target)


def test_allowed_hosts_can_be_linked_and_are_checked_again_on_redirect(variants, settings):
    settings.ALLOWED_HOSTS = ["shop.example", ".shop.example", "testserver"]
    url = clicks.click_url(variants[0].pk, "home-hero", "https://blog.shop.example/spring/")
    response = browser().get(url)
    assert response.status_code == 302
    assert response["Location"] == "https://blog.shop.example/spring/"
    # A host dropped from ALLOWED_HOSTS no longer redirects, even with a valid signature.
    settings.ALLOWED_HOSTS = ["shop.example", "testserver"]
    assert browser().get(url).status_code == 400
    # Nor does a token someone signed with the salt around the check (a leaked key).
    raw = signing.Signer(salt=clicks.CLICK_SALT).sign_object(
        {"v": variants[0].pk, "s": "home-hero", "t": "//evil.com"}
    )
    assert browser().get(f"/aigc/r/{raw}/").status_code == 400


# The feedback API


def post_feedback(client: Client, body, **extra):
    data = body if isinstance(body, bytes | str) else json.dumps(body)
    # sendBeacon with a string sends text/plain.
    return client.post(FEEDBACK, data=data, content_type="text/plain;charset=UTF-8", **extra)


def test_feedback_counts_approved_impressions_and_ignores_the_rest(variants):
    first, second = variants
    second.status = Variant.Status.REJECTED
    second.save()
    response = post_feedback(browser(), {"impressions": [first.pk, second.pk, 987654]})
    assert response.status_code == 202, response.content
    assert response.json() == {"impressions": 1, "ignored": 2, "clicks": 0}
    pending = counters.pending_counts([first.pk, second.pk])
    assert pending == {first.pk: (1, 0), second.pk: (0, 0)}
    # Untracked visitors (Do-Not-Track) count nothing, as on the server.
    assert post_feedback(browser(DNT="1"), {"impressions": [first.pk]}).json()["impressions"] == 0
    assert counters.pending_counts([first.pk])[first.pk] == (1, 0)


def test_feedback_click_by_beacon_counts_once_and_remembers_the_click(variants):
    variant = variants[1]
    token = clicks.sign_click(variant.pk, "home-hero", "/sale/")
    client = browser()
    response = post_feedback(client, {"clicks": [token]})
    assert response.status_code == 202, response.content
    assert response.json()["clicks"] == 1
    assert counters.pending_counts([variant.pk])[variant.pk] == (0, 1)
    assert Event.objects.filter(kind="click").count() == 1
    # The purchase that follows converts the beacon's click.
    track(None, "purchase", value=20.0, visitor=visitor_of(client))
    counters.flush_counters(now=time.time() + 3 * counters.BUCKET_SECONDS)
    assert fresh(variant) == (0, 1, 1)


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ("{not json", 400),
        ("[1, 2]", 400),
        ({"impressions": "1"}, 400),
        ({"impressions": [True]}, 400),
        ({"impressions": [-3]}, 400),
        ({"impressions": [1], "extra": 1}, 400),
        ({"clicks": ["not-a-token"]}, 400),
        ({"impressions": list(range(1, 102))}, 413),
        ("x" * 9000, 413),
    ],
)
def test_feedback_refuses_bad_bodies_and_counts_nothing(variants, body, status):
    response = post_feedback(browser(), body)
    assert response.status_code == status, response.content
    assert "error" in response.json()
    assert counters.pending_counts([1]) == {1: (0, 0)}
    assert not cache.get_many([f"aigc:fb:i:{counters.current_bucket()}:{v.pk}" for v in variants])


def test_feedback_needs_a_request_from_this_site(variants):
    client = browser()
    body = {"impressions": [variants[0].pk]}
    client.defaults.pop("HTTP_ORIGIN")
    assert post_feedback(client, body).status_code == 403
    assert post_feedback(client, body, headers={"Origin": "https://evil.com"}).status_code == 403
    assert post_feedback(client, body, headers={"Origin": "null"}).status_code == 403
    # Without Origin, a Referer from this site will do.
    ok = post_feedback(client, body, headers={"Referer": "http://testserver/shop/"})
    assert ok.status_code == 202
    assert counters.pending_counts([variants[0].pk])[variants[0].pk] == (1, 0)


def test_feedback_is_throttled(variants, aigc):
    aigc(API={"INGEST_RATE": "2/min"})
    client = browser()
    body = {"impressions": [variants[0].pk]}
    statuses = [post_feedback(client, body).status_code for _ in range(3)]
    assert statuses == [202, 202, 429]
    assert counters.pending_counts([variants[0].pk])[variants[0].pk] == (2, 0)


# Conversions


def test_a_purchase_converts_the_last_click_within_the_window(variants):
    first, second = variants
    client = browser()
    visitor = visitor_of(client)
    client.get(clicks.click_url(first.pk, "home-hero", "/a/"))
    client.get(clicks.click_url(second.pk, "home-hero", "/b/"))
    assert track(None, "purchase", value=30.0, visitor=visitor)
    # One click converts once: a second purchase needs another click.
    assert track(None, "purchase", value=10.0, visitor=visitor)
    counters.flush_counters(now=time.time() + 3 * counters.BUCKET_SECONDS)
    assert fresh(first) == (0, 1, 0)
    assert fresh(second) == (0, 1, 1)


def test_purchases_outside_the_window_or_before_the_click_do_not_convert(variants, aigc):
    aigc(DELIVERY={"CONVERSION_WINDOW_HOURS": 24})
    variant = variants[0]
    visitor = uuid.uuid4()
    now = time.time()
    clicks.remember_click(visitor, variant.pk, at=now - 25 * 3600)
    assert track(None, "purchase", value=5.0, visitor=visitor)  # 25 h after: too late
    clicks.remember_click(visitor, variant.pk, at=now - 3600)
    before = datetime.now(UTC) - timedelta(hours=2)
    assert track(None, "purchase", value=5.0, visitor=visitor, occurred_at=before)
    assert clicks.attribute_conversion(visitor, at=now) == variant.pk  # still there, in time
    counters.flush_counters(now=now + 3 * counters.BUCKET_SECONDS)
    assert fresh(variant) == (0, 0, 1)


# Copy-model weighting


def test_clicked_copy_weighs_more_and_more_for_a_higher_click_through():
    slot_rate = bandit.posterior_mean(1000, 50)  # 5%
    unclicked = approved_weight(500, 0, slot_rate)
    usual = approved_weight(400, 20, slot_rate)
    strong = approved_weight(200, 20, slot_rate)
    lucky = approved_weight(10, 1, slot_rate)
    assert unclicked == lucky == APPROVED_WEIGHT  # one click is noise
    assert APPROVED_WEIGHT < usual < strong <= APPROVED_WEIGHT + MAX_CLICK_BONUS


def test_corpus_weights_clicked_approved_copy_up(variants):
    first, second = variants
    Variant.objects.filter(pk=first.pk).update(impressions=300, clicks=3)
    Variant.objects.filter(pk=second.pk).update(impressions=300, clicks=30)
    corpus = build_corpus()
    weights = {
        example.text: example.weight
        for example in corpus.examples
        if example.text.startswith("Run further")
    }
    assert weights["Run further tonight"] > weights["Run further today"]
    # Clicked at a fifth of the slot's rate: no bonus.
    assert weights["Run further today"] == APPROVED_WEIGHT
    assert corpus.sources["clicked variants"] == 1
