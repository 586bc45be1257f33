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
