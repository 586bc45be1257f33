"""Profiles and segments: features, rebuilds on simulated shoppers, stable segment keys,
rule segments, incremental updates, the cached lookup, and bad input."""

from __future__ import annotations

import math
import uuid
from datetime import UTC, datetime, timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext

from aigc_django.models import ModelArtifact, Profile, Segment, Slot, Variant
from aigc_django.profiles import build, lookup
from aigc_django.profiles.features import build_features, read_events
from aigc_django.profiles.quality import adjusted_rand_index
from aigc_django.profiles.simulator import simulate
from aigc_django.tracking.ingest import write_events

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _models_in_tmp(aigc, tmp_path):
    aigc(MODEL_DIR=str(tmp_path / "models"))


@pytest.fixture
def shoppers():
    sim = simulate(visitors=900, personas=4, seed=3, now=NOW)
    write_events(sim.events)
    return sim


def event(visitor, kind, when, item="", category="", value=None, **properties):
    return {
        "visitor": str(visitor),
        "kind": kind,
        "item": item,
        "category": category,
        "value": value,
        "properties": properties,
        "occurred_at": when.isoformat(),
    }


def test_interest_halves_every_half_life_and_kinds_weigh_differently(aigc):
    aigc(PROFILES={"HALF_LIFE_DAYS": 10.0})
    a, b = uuid.uuid4(), uuid.uuid4()
    write_events(
        [
            event(a, "product_view", NOW, "s1", "shoes"),
            event(a, "product_view", NOW - timedelta(days=10), "b1", "books"),
            event(b, "purchase", NOW, "s1", "shoes", value=50.0),
            event(b, "add_to_cart", NOW - timedelta(days=1), "s2", "shoes", value=20.0),
            event(b, "product_view", NOW - timedelta(days=3), "s2", "shoes"),
            event(
                b, "page_view", NOW - timedelta(days=2), device="mobile", referrer="news.example"
            ),
        ]
    )
    features = build_features(read_events(), NOW)
    rows = {key: i for i, key in enumerate(features.visitor_keys)}
    shoes, books = features.category_keys.index("shoes"), features.category_keys.index("books")
    ia = features.interests[rows[str(a)]]
    assert ia[shoes] == pytest.approx(1.0) and ia[books] == pytest.approx(0.5)
    ib = features.interests[rows[str(b)]]
    expected = 8.0 + 4.0 * 2 ** (-1 / 10) + 1.0 * 2 ** (-3 / 10)
    assert ib[shoes] == pytest.approx(expected, rel=1e-5)
    assert features.monetary[rows[str(b)]] == pytest.approx(50.0)
    assert not features.cart_open[rows[str(b)]]  # bought after the cart change
    assert features.event_counts[rows[str(b)]] == 4
    assert features.recency_days[rows[str(a)]] == pytest.approx(0.0)
    assert features.device[rows[str(b)]] == "mobile"
    assert features.referrer[rows[str(b)]] == "news.example"


def test_whole_cart_purchases_count_for_each_listed_item():
    v = uuid.uuid4()
    write_events(
        [
            event(v, "product_view", NOW - timedelta(hours=1), "s1", "shoes"),
            event(v, "purchase", NOW, value=30.0, items=["s1", "unknown-item"]),
        ]
    )
    features = build_features(read_events(), NOW)
    shoes = features.category_keys.index("shoes")
    viewed = 2 ** (-1 / (14 * 24))  # an hour ago, half-life 14 days
    assert features.interests[0][shoes] == pytest.approx(viewed + 8.0, rel=1e-5)
    assert features.event_counts[0] == 2  # listed items are not extra events
    assert features.monetary[0] == pytest.approx(30.0)


def test_rebuild_recovers_the_hidden_personas(shoppers):
    report = build.build_profiles(now=NOW)
    assert report.k == 4
    profiles = {
        str(p.visitor_id): p.segment.key
        for p in Profile.objects.select_related("segment").filter(segment__kind="learned")
    }
    assert report.eligible == len(profiles) > 800
    truth = [shoppers.truth[v] for v in profiles]
    assert adjusted_rand_index(truth, list(profiles.values())) >= 0.8
    learned = Segment.objects.filter(kind="learned", active=True)
    assert learned.count() == 4
    for segment in learned:
        assert segment.top_categories and segment.top_categories[0][1] > 0.4
        assert segment.description.startswith("Visitors most interested in")
        assert len(segment.top_items) == 10
        assert segment.size == Profile.objects.filter(segment=segment).count()
    assert Segment.objects.get(key="everyone").size == report.visitors
    artifact = ModelArtifact.objects.get(kind="factorization", active=True)
    assert artifact.version == 1 and (artifact.path and artifact.metrics["items"] > 0)
    profile = Profile.objects.exclude(embedding=None).first()
    assert len(profile.embedding) == 32 and len(profile.top_items) == 10


def test_segment_keys_and_content_survive_a_rebuild(shoppers):
    build.build_profiles(now=NOW)
    before = {s.key: s.pk for s in Segment.objects.filter(kind="learned")}
    segment = Segment.objects.get(pk=next(iter(before.values())))
    slot = Slot.objects.create(key="home-hero", name="Home hero")
    variant = Variant.objects.create(slot=slot, segment=segment, status="approved")
    segment.name = "Renamed by an editor"
    segment.save()

    # A week later: more of the same visitors' behaviour, re-seeded sampling.
    more = simulate(visitors=300, personas=4, seed=4, now=NOW + timedelta(days=7))
    write_events(more.events)
    report = build.build_profiles(now=NOW + timedelta(days=7))
    after = {s.key: s.pk for s in Segment.objects.filter(kind="learned", active=True)}
    assert after == before
    assert not any(s.is_new for s in report.segments)
    variant.refresh_from_db()
    assert variant.segment_id == segment.pk
    assert Segment.objects.get(pk=segment.pk).name == "Renamed by an editor"
    assert ModelArtifact.objects.filter(kind="factorization").count() == 2


def test_rule_segments_take_precedence_by_priority(shoppers):
    big = Segment.objects.create(
        key="big-spenders",
        name="Big spenders",
        kind="rule",
        priority=10,
        rules=[{"type": "high_spender", "min_spent": 100}],
    )
    mobile = Segment.objects.create(
        key="mobile",
        name="Mobile",
        kind="rule",
        priority=1,
        rules=[{"type": "device", "is": "mobile"}],
    )
    Segment.objects.create(key="broken", name="Broken", kind="rule", rules=[{"type": "astrology"}])
    build.build_profiles(now=NOW)
    for profile in Profile.objects.select_related("segment"):
        if profile.monetary >= 100:
            assert profile.segment_id == big.pk
        elif profile.device == "mobile":
            assert profile.segment_id == mobile.pk
        else:
            assert profile.segment.kind in ("learned", "everyone")
    assert Segment.objects.get(pk=big.pk).size > 0
    assert Segment.objects.get(key="broken").size == 0


def test_rule_conditions(aigc):
    from aigc_django.profiles.rules import matches

    v_new, v_cart, v_old = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    write_events(
        [
            event(v_new, "product_view", NOW - timedelta(days=1), "s1", "shoes"),
            event(v_cart, "product_view", NOW - timedelta(days=20), "k1", "kitchen"),
            event(v_cart, "add_to_cart", NOW - timedelta(hours=5), "k1", "kitchen", value=9.0),
            event(
                v_old,
                "product_view",
                NOW - timedelta(days=30),
                "k1",
                "kitchen",
                referrer="www.google.com",
            ),
        ]
    )
    features = build_features(read_events(), NOW)
    rows = {key: i for i, key in enumerate(features.visitor_keys)}

    def who(rules):
        mask = matches(rules, features, NOW.timestamp())
        return {key for key, i in rows.items() if mask[i]}

    assert who([{"type": "new_visitor", "days": 7}]) == {str(v_new)}
    assert who([{"type": "cart_abandoner", "idle_hours": 2}]) == {str(v_cart)}
    assert who([{"type": "cart_abandoner", "idle_hours": 6}]) == set()
    assert who([{"type": "category_affinity", "category": "kitchen", "min_share": 0.9}]) == {
        str(v_cart),
        str(v_old),
    }
    assert who([{"type": "referrer", "contains": "google"}]) == {str(v_old)}
    assert who([{"type": "category_affinity", "category": "nope", "min_share": 0.1}]) == set()


@pytest.mark.parametrize(
    ("rules", "message"),
    [
        ([], "non-empty list"),
        ([{"type": "astrology"}], "'type' must be one of"),
        ([{"type": "high_spender"}], "'min_spent' is required"),
        ([{"type": "high_spender", "min_spent": "lots"}], "wrong type"),
        ([{"type": "high_spender", "min_spent": -5}], "at least 0"),
        ([{"type": "referrer", "contains": " "}], "must not be empty"),
        ([{"type": "device", "is": "fridge"}], "'is' must be one of"),
        ([{"type": "device", "is": "mobile", "colour": "red"}], "unknown parameter"),
    ],
)
def test_invalid_rules_are_explained(rules, message):
    from django.core.exceptions import ValidationError

    from aigc_django.profiles.rules import validate_rules

    with pytest.raises(ValidationError, match=message):
        validate_rules(rules)


def test_visitors_with_too_few_events_stay_in_everyone(shoppers, aigc):
    lonely = uuid.uuid4()
    write_events([event(lonely, "product_view", NOW, "SHO-0001", "shoes")])
    build.build_profiles(now=NOW)
    assert Profile.objects.get(visitor_id=lonely).segment.key == "everyone"


def test_empty_and_tiny_event_tables_build():
    report = build.build_profiles(now=NOW)
    assert (report.visitors, report.k) == (0, 0)
    assert list(Segment.objects.values_list("key", flat=True)) == ["everyone"]
    v = uuid.uuid4()
    write_events(
        [event(v, "product_view", NOW, "s1", "shoes"), event(v, "product_view", NOW, "s2", "shoes")]
    )
    report = build.build_profiles(now=NOW)
    assert report.visitors == 1 and report.k == 0
    assert Profile.objects.get().segment.key == "everyone"


def test_a_failed_rebuild_leaves_the_previous_segments(shoppers, monkeypatch):
    build.build_profiles(now=NOW)
    segments = sorted(Segment.objects.values_list("key", "size", "active"))
    assignments = dict(Profile.objects.values_list("visitor_id", "segment_id"))

    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(build, "_write_profiles", broken)
    more = simulate(visitors=200, personas=2, seed=9, now=NOW)
    write_events(more.events)
    with pytest.raises(RuntimeError):
        build.build_profiles(now=NOW)
    assert sorted(Segment.objects.values_list("key", "size", "active")) == segments
    assert dict(Profile.objects.values_list("visitor_id", "segment_id")) == assignments
    assert ModelArtifact.objects.filter(kind="factorization").count() == 1


def test_incremental_update_moves_a_visitor_to_their_new_taste(shoppers):
    build.build_profiles(now=NOW)
    shoes = max(
        Segment.objects.filter(kind="learned"),
        key=lambda s: dict(map(tuple, s.top_categories)).get("shoes", 0),
    )
    convert = uuid.uuid4()
    write_events([event(convert, "category_view", NOW, category="books")] * 3)
    assert build.update_profiles([convert], now=NOW) == 1
    first = Profile.objects.get(visitor_id=convert).segment
    write_events([event(convert, "purchase", NOW, "SHO-0001", "shoes", value=80.0)] * 4)
    build.update_profiles([convert], now=NOW + timedelta(minutes=1))
    profile = Profile.objects.get(visitor_id=convert)
    assert profile.segment == shoes != first
    assert profile.monetary == pytest.approx(320.0)
    assert lookup.segment_key_for(convert) == shoes.key


def test_refresh_updates_only_stale_visitors(shoppers):
    build.build_profiles(now=NOW)
    assert build.refresh_profiles() == 0
    v = uuid.uuid4()
    write_events([event(v, "product_view", NOW, "SHO-0001", "shoes")] * 3)
    assert build.refresh_profiles() == 1
    assert Profile.objects.filter(visitor_id=v).exists()


def test_refresh_finds_events_that_did_not_move_last_seen(shoppers):
    # On PostgreSQL, ingest moves last_seen only by more than 5 minutes: an event just after
    # the build, close to the visitor's last_seen, leaves it before built_at.
    v = uuid.uuid4()
    write_events([event(v, "product_view", NOW - timedelta(minutes=2), "SHO-0001", "shoes")] * 3)
    assert build.update_profiles([v], now=NOW) == 1
    write_events(
        [event(v, "purchase", NOW + timedelta(minutes=1), "SHO-0001", "shoes", value=50.0)]
    )
    assert build.refresh_profiles() >= 1
    assert Profile.objects.get(visitor_id=v).monetary == pytest.approx(50.0)


def test_segment_lookup_is_cached_and_invalidated_by_rebuilds(shoppers):
    build.build_profiles(now=NOW)
    visitor = Profile.objects.filter(segment__kind="learned").first().visitor_id
    expected = Profile.objects.get(visitor_id=visitor).segment.key
    assert lookup.segment_key_for(visitor) == expected
    with CaptureQueriesContext(connection) as queries:
        assert lookup.segment_key_for(visitor) == expected
        assert lookup.segment_key_for(None) == "everyone"
    assert len(queries) == 0
    assert lookup.segment_key_for(uuid.uuid4()) == "everyone"
    Profile.objects.filter(visitor_id=visitor).update(segment=Segment.objects.get(key="everyone"))
    assert lookup.segment_key_for(visitor) == expected  # still cached
    lookup.bump_version()
    assert lookup.segment_key_for(visitor) == "everyone"


def test_build_profiles_command_prints_a_table(shoppers):
    out = StringIO()
    call_command("aigc_build_profiles", "--no-progress", stdout=out, stderr=StringIO())
    text = out.getvalue()
    assert "learned segments" in text and "top categories" in text
    assert text.count("learned ") >= 4
    out = StringIO()
    call_command("aigc_build_profiles", "--incremental", stdout=out)
    assert "Updated 0 profiles." in out.getvalue()


def test_ari_helper():
    assert adjusted_rand_index([0, 0, 1, 1], ["a", "a", "b", "b"]) == 1.0
    assert adjusted_rand_index([0, 0, 1, 1], [0, 1, 0, 1]) < 0.01
    assert math.isclose(
        adjusted_rand_index([0, 0, 0, 1, 1, 1], [0, 0, 1, 1, 2, 2]), 0.2424, abs_tol=1e-3
    )


def test_editors_write_rule_segments_in_the_admin_and_bad_rules_are_refused(client):
    from django.contrib.auth.models import User

    User.objects.create_superuser("editor", password="pw")
    client.login(username="editor", password="pw")
    form = {
        "name": "Big spenders",
        "key": "big-spenders",
        "kind": "rule",
        "description": "",
        "priority": "5",
        "active": "on",
    }
    bad = client.post(
        "/admin/aigc_django/segment/add/", {**form, "rules": '[{"type": "astrology"}]'}
    )
    assert bad.status_code == 200 and b"type" in bad.content
    assert not Segment.objects.filter(key="big-spenders").exists()
    good = client.post(
        "/admin/aigc_django/segment/add/",
        {**form, "rules": '[{"type": "high_spender", "min_spent": 200}]'},
    )
    assert good.status_code == 302
    assert Segment.objects.get(key="big-spenders").rules == [
        {"type": "high_spender", "min_spent": 200}
    ]
    everyone = Segment.objects.get(key="everyone")
    page = client.get(f"/admin/aigc_django/segment/{everyone.pk}/delete/")
    assert page.status_code == 403


def test_postgresql_reads_the_same_columns_as_the_orm(postgres):
    from aigc_django.models import Event
    from aigc_django.profiles import features

    a, b = uuid.uuid4(), uuid.uuid4()
    write_events(
        [
            event(a, "product_view", NOW - timedelta(days=2, microseconds=7), "s1", "shoes"),
            event(a, "search", NOW - timedelta(hours=5), device="mobile", referrer="ads.example"),
            event(b, "add_to_cart", NOW - timedelta(days=1), "s2", "shoes", value=20.5),
            event(b, "purchase", NOW, value=70.0, items=["s1", "s2"]),
            event(b, "product_view", NOW - timedelta(minutes=3), "b1", "", device="desktop"),
        ]
    )
    for visitor_ids in (None, [str(b)]):
        fast = read_events(visitor_ids)  # the server-side cursor path
        slow = features.EventColumns()
        events = Event.objects.all()
        if visitor_ids is not None:
            events = events.filter(visitor_id__in=visitor_ids)
        if features._read_orm(slow, events, 100):
            features._add_listed_purchases(slow, events)
        for name in ("visitor", "kind", "item", "category"):
            assert list(getattr(fast, name)) == list(getattr(slow, name)), name
        for name in ("visitors", "categories", "items", "kinds"):
            assert getattr(fast, name).keys == getattr(slow, name).keys, name
        assert list(fast.time) == pytest.approx(list(slow.time), abs=1e-6)
        assert [v if v == v else None for v in fast.value] == [
            v if v == v else None for v in slow.value
        ]
        assert (fast.device, fast.referrer, fast.item_category) == (
            slow.device,
            slow.referrer,
            slow.item_category,
        )
    assert len(read_events()) == 7  # five events and the purchase's two listed items
