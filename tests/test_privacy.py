"""Retention purge, erasure and export: services and management commands."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta
from io import StringIO

import pytest
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command
from django.utils import timezone

from aigc_django import track
from aigc_django.models import Event, IngestBatch, Profile, Visitor
from aigc_django.tracking.events import allowed_kinds
from aigc_django.tracking.privacy import erase_visitor, export_visitor
from tests.conftest import BROWSER_UA

pytestmark = pytest.mark.django_db


def visitor_with_events(count: int, days_ago: float = 0, **visitor_fields) -> Visitor:
    when = timezone.now() - timedelta(days=days_ago)
    visitor = Visitor.objects.create(first_seen=when, last_seen=when, **visitor_fields)
    for i in range(count):
        track(
            None,
            "product_view",
            item=f"sku-{i}",
            visitor=visitor.pk,
            occurred_at=when + timedelta(seconds=i),
        )
    return visitor


def test_purge_deletes_old_events_and_empty_anonymous_visitors(aigc):
    aigc(RETENTION_DAYS=30)
    old = visitor_with_events(3, days_ago=29.99)
    Event.objects.filter(visitor=old).update(occurred_at=timezone.now() - timedelta(days=40))
    Visitor.objects.filter(pk=old.pk).update(last_seen=timezone.now() - timedelta(days=40))
    recent = visitor_with_events(2, days_ago=1)
    account = Visitor.objects.create(
        user=User.objects.create_user("kept"), last_seen=timezone.now() - timedelta(days=90)
    )
    IngestBatch.objects.create(key="old", size=1, written_at=timezone.now() - timedelta(days=31))
    IngestBatch.objects.create(key="new", size=1, written_at=timezone.now() - timedelta(days=2))

    out = StringIO()
    call_command("aigc_purge", stdout=out)
    assert "Deleted 3 events and 1 visitors older than 30 days" in out.getvalue()
    assert set(Visitor.objects.values_list("pk", flat=True)) == {recent.pk, account.pk}
    assert Event.objects.count() == 2
    assert list(IngestBatch.objects.values_list("key", flat=True)) == ["new"]


def test_purge_days_option_and_bad_value():
    visitor_with_events(1, days_ago=5)
    call_command("aigc_purge", "--days", "10", stdout=StringIO())
    assert Event.objects.count() == 1
    call_command("aigc_purge", "--days", "3", stdout=StringIO())
    assert Event.objects.count() == 0
    with pytest.raises(SystemExit) as exit_info:
        call_command("aigc_purge", "--days", "0", stdout=StringIO(), stderr=StringIO())
    assert exit_info.value.code == 2


def test_erase_visitor_command_removes_only_that_visitor():
    gone = visitor_with_events(3)
    Profile.objects.create(visitor=gone, interests={"shoes": 1.0})
    merged = visitor_with_events(2, merged_into=gone)
    kept = visitor_with_events(2)
    out = StringIO()
    call_command("aigc_erase_visitor", str(gone.pk), stdout=out)
    assert "2 visitor records, 5 events" in out.getvalue()
    assert list(Visitor.objects.values_list("pk", flat=True)) == [kept.pk]
    assert not Profile.objects.exists()
    assert not Visitor.objects.filter(pk=merged.pk).exists()


def test_a_merge_that_lands_before_the_lock_is_erased_with_every_lock_in_id_order(
    monkeypatch,
):
    from aigc_django.tracking import privacy

    root = visitor_with_events(2)
    merged = visitor_with_events(3, merged_into=root)
    read, lock = privacy._visitor_ids, privacy.lock_visitors
    calls: list[list] = []
    # The first read misses the merge, as if it committed just after that read.
    monkeypatch.setattr(privacy, "_visitor_ids", lambda vid: [root.pk] if not calls else read(vid))
    monkeypatch.setattr(privacy, "lock_visitors", lambda ids: calls.append(list(ids)) or lock(ids))
    assert erase_visitor(root.pk) == {"visitors": 2, "events": 5}
    # The second round let go of the first lock and took both again, in id order (a
    # writer locks in id order too: taking the merged one after the root could deadlock).
    assert calls == [[root.pk], sorted([root.pk, merged.pk])]
    assert not Visitor.objects.exists() and not Event.objects.exists()


def test_erase_by_username():
    user = User.objects.create_user("grace")
    visitor_with_events(2, user=user)
    call_command("aigc_erase_visitor", "--user", "grace", stdout=StringIO())
    assert not Event.objects.exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["not-a-uuid"], "is not a visitor UUID"),
        ([str(uuid.uuid4())], "No visitor"),
        (["--user", "nobody"], "No user"),
    ],
)
def test_erase_and_export_report_unknown_visitors(args, message):
    for command in ("aigc_erase_visitor", "aigc_export_visitor"):
        with pytest.raises(CommandError, match=message):
            call_command(command, *args, stdout=StringIO())


def test_export_visitor_command_writes_json(tmp_path):
    visitor = visitor_with_events(3)
    target = tmp_path / "export.json"
    call_command("aigc_export_visitor", str(visitor.pk), "--output", str(target), stderr=StringIO())
    data = json.loads(target.read_text())
    assert data["visitor"]["id"] == str(visitor.pk)
    assert [e["item"] for e in data["events"]] == ["sku-0", "sku-1", "sku-2"]
    assert data["profile"] is None

    out = StringIO()
    call_command("aigc_export_visitor", str(visitor.pk), stdout=out)
    assert json.loads(out.getvalue())["visitor"]["id"] == str(visitor.pk)


def test_erasure_flushes_buffered_events_first(aigc):
    aigc(INGEST={"MODE": "buffered", "BATCH_SIZE": 100, "FLUSH_INTERVAL": 3600})
    visitor = Visitor.objects.create()
    track(None, "page_view", visitor=visitor.pk)
    call_command("aigc_erase_visitor", str(visitor.pk), stdout=StringIO())
    assert not Event.objects.exists()
    assert not Visitor.objects.exists()


# Erasure and export, checked by scanning every table of the app ----------------------------


def rows_about(visitor_ids: set[str]) -> dict[str, set]:
    """Every row of every model of the app that references one of the visitors: by a
    foreign key, by the id in any text or UUID column, or anywhere inside a JSON column.
    Returns {model label: {primary keys}}."""
    from django.apps import apps
    from django.db import models

    needles = visitor_ids | {uuid.UUID(v).hex for v in visitor_ids}
    found: dict[str, set] = {}
    for model in apps.get_app_config("aigc_django").get_models():
        for row in model._default_manager.all():
            for field in model._meta.concrete_fields:
                value = field.value_from_object(row)
                if value is None:
                    continue
                if isinstance(field, models.JSONField):
                    text = json.dumps(value, default=str)
                else:
                    text = str(value)
                if any(needle in text for needle in needles):
                    found.setdefault(model._meta.label, set()).add(row.pk)
    return found


@pytest.fixture
def browser_pair():
    """Two browsers of one account holder (logged in on the first) and someone else's."""
    from django.test import Client

    User.objects.create_user("ada", password="pw")
    headers = {"User-Agent": BROWSER_UA, "Origin": "http://testserver"}
    account, anonymous, other = (
        Client(headers=headers),
        Client(headers=headers),
        Client(headers=headers),
    )
    account.get("/visitor/")
    assert account.post("/login/", {"username": "ada", "password": "pw"}).status_code == 200
    return account, anonymous, other


def test_erasure_leaves_no_row_about_the_visitor_and_export_returns_every_row(
    browser_pair, django_capture_on_commit_callbacks
):
    from django.core.cache import cache

    from aigc_django.delivery import clicks, selection
    from aigc_django.models import Segment, Slot, Variant
    from aigc_django.profiles.build import ensure_everyone

    account, anonymous, other = browser_pair
    root = account.get("/visitor/").json()["visitor"]
    merged = anonymous.get("/visitor/").json()["visitor"]
    # The anonymous visitor had a profile (and a segment) before logging in and merging.
    runners = Segment.objects.create(key="runners", name="Runners")
    Profile.objects.create(visitor_id=merged, segment=runners, interests={"shoes": 1.0})
    anonymous.post(
        "/aigc/api/events/",
        json.dumps([{"kind": "search", "properties": {"q": "boots"}}]),
        content_type="application/json",
    )
    assert anonymous.post("/login/", {"username": "ada", "password": "pw"}).status_code == 200
    assert Visitor.objects.get(pk=merged).merged_into_id == uuid.UUID(root)

    # Every kind of event, impressions and clicks of generated content, a conversion.
    slot = Slot.objects.create(key="home-hero", name="Hero", link="/sale/")
    variant = Variant.objects.create(
        slot=slot, segment=ensure_everyone(), status=Variant.Status.APPROVED, copy={}
    )
    Profile.objects.create(visitor_id=root, segment=runners, top_items=["sku-1"])
    kinds = sorted(allowed_kinds())
    body = [{"kind": kind, "item": "sku-1", "properties": {"n": i}} for i, kind in enumerate(kinds)]
    response = account.post("/aigc/api/events/", json.dumps(body), content_type="application/json")
    assert response.status_code == 202, response.content
    token = clicks.sign_click(variant.pk, "home-hero", "/sale/")
    response = account.post(
        "/aigc/api/feedback/",
        json.dumps({"impressions": [variant.pk], "clicks": [token]}),
        content_type="application/json",
    )
    assert response.json() == {"impressions": 1, "ignored": 0, "clicks": 1}
    assert account.get(f"/aigc/r/{token}/").status_code == 302
    account.post(
        "/aigc/api/events/",
        json.dumps([{"kind": "purchase", "value": 20}]),
        content_type="application/json",
    )
    # The purchase converted the click (it consumed the visitor's last click); a new click
    # leaves one waiting for a purchase, kept in the cache under the visitor's id.
    last_click = f"aigc:fb:last_click:{root}"
    assert cache.get(last_click) is None
    assert account.get(f"/aigc/r/{token}/").status_code == 302
    assert cache.get(last_click) is not None
    selection.choose(account.get("/store/").wsgi_request, "home-hero")
    # Someone else's data, which must survive.
    other_id = other.get("/visitor/").json()["visitor"]
    other.post(
        "/aigc/api/events/", json.dumps([{"kind": "page_view"}]), content_type="application/json"
    )
    bystander = rows_about({other_id})
    assert bystander["aigc_django.Event"]

    ids = {root, merged}
    before = rows_about(ids)
    assert set(before) >= {"aigc_django.Visitor", "aigc_django.Event", "aigc_django.Profile"}

    # Export: every row the scan finds is in it.
    exported = account.get("/aigc/api/me/").json()
    covered = {
        "aigc_django.Visitor": {exported["visitor"]["id"], *exported["visitor"]["merged_visitors"]},
        "aigc_django.Event": len(exported["events"]),
        "aigc_django.Profile": {p["visitor"] for p in exported["merged_profiles"]}
        | ({exported["visitor"]["id"]} if exported["profile"] else set()),
    }
    assert set(before) <= set(covered), f"export leaves out {set(before) - set(covered)}"
    assert {str(pk) for pk in before["aigc_django.Visitor"]} == covered["aigc_django.Visitor"]
    assert len(before["aigc_django.Event"]) == covered["aigc_django.Event"]
    profile_owners = {
        str(p.visitor_id) for p in Profile.objects.filter(pk__in=before["aigc_django.Profile"])
    }
    assert profile_owners == covered["aigc_django.Profile"] == ids
    assert {e["kind"] for e in exported["events"]} >= set(kinds) | {"click", "search"}

    # Erasure: no row of any table refers to them; the cache forgets them too.
    with django_capture_on_commit_callbacks(execute=True):
        assert account.delete("/aigc/api/me/").status_code == 200
    assert rows_about(ids) == {}
    for visitor_id in ids:
        assert cache.get(selection.sticky_key(visitor_id)) is None
        assert cache.get(f"aigc:fb:last_click:{visitor_id}") is None
    assert rows_about({other_id}) == bystander
    assert User.objects.filter(username="ada").exists()  # the project's account is its own


def test_after_a_profile_build_the_visitor_is_only_in_their_own_rows(aigc, tmp_path):
    """A rebuild writes segments (sizes, centroids, top items) and model artifacts: none of
    them may name a visitor, so erasing the visitor's own rows leaves nothing about them."""
    import torch

    from aigc_django.profiles.build import build_profiles

    torch.set_num_threads(2)
    aigc(PROFILES={"SEGMENTS": 2}, MODEL_DIR=str(tmp_path / "models"))
    visitors = []
    for n in range(12):
        visitor = Visitor.objects.create()
        for i in range(4):
            track(
                None,
                "product_view",
                item=f"sku-{(n % 3) * 4 + i}",
                category=["shoes", "pans", "tents"][n % 3],
                visitor=visitor.pk,
                properties={"page": f"/p/{i}/"},
            )
        visitors.append(str(visitor.pk))
    build_profiles()
    from aigc_django.models import ModelArtifact, Segment

    # The scan looks at real derived rows, not empty tables.
    assert Segment.objects.filter(kind=Segment.Kind.LEARNED).count() == 2
    assert ModelArtifact.objects.exists()
    target = visitors[0]
    before = rows_about({target})
    assert set(before) == {"aigc_django.Visitor", "aigc_django.Event", "aigc_django.Profile"}
    export = export_visitor(target)
    assert len(before["aigc_django.Event"]) == len(export["events"])
    assert export["profile"] is not None and export["profile"]["segment"]
    erase_visitor(target)
    assert rows_about({target}) == {}
    assert rows_about({visitors[1]})  # the others are untouched
