"""The content dashboard and the slot, segment and job admin pages: coverage numbers and gaps,
the Generate button and its permission, credible intervals, well-formed SVG charts, bounded
queries, the fallback preview, retrying jobs, and what the segment page shows."""

from __future__ import annotations

import itertools
import math
import re
import xml.etree.ElementTree as ET
from datetime import timedelta
from decimal import Decimal

import pytest
from django.contrib.auth.models import Permission, User
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from aigc_django.generation import service
from aigc_django.models import GenerationJob, Profile, Segment, Slot, Variant, Visitor
from aigc_django.moderation import charts, stats
from tests.shopapp.models import Category
from tests.shopapp.models import Product as ShopProduct

pytestmark = pytest.mark.django_db

DASHBOARD = "/admin/aigc_django/slot/dashboard/"
GENERATE = "/admin/aigc_django/slot/dashboard/generate/"
# The app's charts (the admin has SVG icons of its own).
SVG = re.compile(r'<svg xmlns="http://www.w3.org/2000/svg" width=.*?</svg>', re.S)


DUMMY_GENERATION = {"BATCH_SIZE": 4, "RETRY_BACKOFF": 0}


@pytest.fixture(autouse=True)
def _dummy_backends(dummy_backends):
    """Every test here generates with the dummy backends (tests/conftest.py)."""


@pytest.fixture
def shop() -> dict:
    """Two slots and two active segments (runners, everyone) plus an inactive one."""
    shoes = Category.objects.create(slug="running-shoes", name="Running shoes")
    for i in range(3):
        ShopProduct.objects.create(
            sku=f"S{i}", name=f"Trail Runner {i}", price=Decimal("89.90"), category=shoes
        )
    runners = Segment.objects.create(
        key="runners",
        name="Runners",
        size=120,
        top_categories=[["running-shoes", 0.8], ["socks", 0.15]],
        top_items=["S2", "S0", "GONE"],
    )
    Segment.objects.create(key="retired", name="Retired", active=False, size=5)
    Segment.objects.filter(key="everyone").update(size=900)
    banner = Slot.objects.create(
        key="home-hero",
        name="Home hero",
        sizes=[[600, 200], [300, 250]],
        copy_fields={"headline": 50, "body": 120, "cta": 20},
        variants_per_segment=2,
    )
    copy_slot = Slot.objects.create(
        key="home-copy",
        name="Home copy",
        kind=Slot.Kind.COPY,
        copy_fields={"headline": 50, "cta": 20},
        variants_per_segment=3,
    )
    return {
        "runners": runners,
        "everyone": Segment.objects.get(key="everyone"),
        "banner": banner,
        "copy": copy_slot,
    }


def variant(slot: Slot, segment: Segment, status: str, **fields) -> Variant:
    return Variant.objects.create(
        slot=slot, segment=segment, status=status, copy={"headline": "Run"}, **fields
    )


@pytest.fixture
def known_cells(shop) -> dict:
    """hero/runners: 2 approved (ok); hero/everyone: 1 approved + 1 pending (waiting);
    copy/runners: 1 approved + a queued job for 1 (gap, 1 missing); copy/everyone: nothing
    (gap, 3 missing). Rejected variants and the inactive segment do not count."""
    approved, pending = Variant.Status.APPROVED, Variant.Status.PENDING
    variant(shop["banner"], shop["runners"], approved)
    variant(shop["banner"], shop["runners"], approved)
    variant(shop["banner"], shop["runners"], Variant.Status.REJECTED)
    variant(shop["banner"], shop["everyone"], approved)
    variant(shop["banner"], shop["everyone"], pending)
    variant(shop["copy"], shop["runners"], approved)
    service.create_job(shop["copy"], shop["runners"], 1)
    variant(shop["copy"], Segment.objects.get(key="retired"), approved)
    return shop


def staff(username: str, *codenames: str) -> Client:
    user = User.objects.create_user(username, password="pw", is_staff=True)
    user.user_permissions.set(
        Permission.objects.filter(content_type__app_label="aigc_django", codename__in=codenames)
    )
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def editor() -> Client:
    user = User.objects.create_superuser("editor", password="pw")
    client = Client()
    client.force_login(user)
    return client


def cell_states(html: str) -> dict[str, str]:
    return dict(re.findall(r'data-cell="([^"]+)" data-state="([^"]+)"', html))


# Coverage -----------------------------------------------------------------------------------


def test_coverage_matrix_counts_and_gaps(known_cells, editor):
    matrix = stats.coverage_matrix()
    assert [s.key for s in matrix.slots] == ["home-copy", "home-hero"]
    assert {s.key for s in matrix.segments} == {"runners", "everyone"}
    figures = {
        (slot.key, cell.segment.key): (cell.approved, cell.pending, cell.queued, cell.missing)
        for slot, cells in matrix.rows
        for cell in cells
    }
    assert figures == {
        ("home-hero", "runners"): (2, 0, 0, 0),
        ("home-hero", "everyone"): (1, 1, 0, 0),
        ("home-copy", "runners"): (1, 0, 1, 1),
        ("home-copy", "everyone"): (0, 0, 0, 3),
    }
    for slot, cells in matrix.rows:  # the same figures as the planner's own count
        for cell in cells:
            assert cell.coverage == service.coverage(slot, cell.segment)
    assert matrix.gaps == 2

    page = editor.get(DASHBOARD)
    assert page.status_code == 200
    html = page.content.decode()
    assert cell_states(html) == {
        "home-hero/runners": "ok",
        "home-hero/everyone": "waiting",
        "home-copy/runners": "gap",
        "home-copy/everyone": "gap",
    }
    assert "Generate 1" in html and "Generate 3" in html
    assert html.count('name="segment"') == 2  # a button for each gap only
    assert "Retired" not in html
    index = editor.get("/admin/aigc_django/").content.decode()
    assert f'href="{DASHBOARD}"' in index


def test_generate_queues_one_job_for_the_missing_count_once(known_cells, editor):
    slot, segment = known_cells["copy"], known_cells["everyone"]
    form = {"slot": slot.pk, "segment": segment.pk}
    response = editor.post(GENERATE, form, follow=True)
    assert response.redirect_chain[-1][0] == DASHBOARD
    (job,) = GenerationJob.objects.filter(slot=slot, segment=segment)
    assert job.count == 3 and job.status == GenerationJob.Status.QUEUED
    assert "Queued job" in response.content.decode()
    assert cell_states(response.content.decode())["home-copy/everyone"] == "waiting"

    again = editor.post(GENERATE, form, follow=True)
    assert GenerationJob.objects.filter(slot=slot, segment=segment).count() == 1
    assert "enough variants approved, pending or queued" in again.content.decode()
    assert editor.get(GENERATE).status_code == 405


def test_generate_dispatches_the_job_on_commit(
    known_cells, editor, django_capture_on_commit_callbacks
):
    slot, segment = known_cells["copy"], known_cells["runners"]
    with django_capture_on_commit_callbacks(execute=True):
        editor.post(GENERATE, {"slot": slot.pk, "segment": segment.pk})
    job = GenerationJob.objects.filter(slot=slot, segment=segment).latest("id")
    assert job.count == 1
    assert job.status == GenerationJob.Status.SUCCEEDED  # eager Celery, dummy backends
    assert job.variants.count() == 1


def test_dashboard_and_generate_need_permissions(known_cells):
    form = {"slot": known_cells["copy"].pk, "segment": known_cells["everyone"].pk}
    assert staff("nobody").get(DASHBOARD).status_code == 403
    assert Client().get(DASHBOARD).status_code == 302  # to the admin login

    viewer = staff("viewer", "view_variant")
    page = viewer.get(DASHBOARD)
    assert page.status_code == 200 and "Generate 3" not in page.content.decode()
    assert viewer.post(GENERATE, form).status_code == 403
    assert not GenerationJob.objects.filter(segment=known_cells["everyone"]).exists()

    planner = staff("planner", "view_variant", "add_generationjob")
    assert "Generate 3" in planner.get(DASHBOARD).content.decode()
    assert planner.post(GENERATE, form).status_code == 302
    assert GenerationJob.objects.filter(segment=known_cells["everyone"]).count() == 1


# Click-through ------------------------------------------------------------------------------


def test_credible_interval_known_values():
    flat = stats.click_through_interval(0, 0)
    assert math.isclose(flat.low, 0.025, abs_tol=1e-9)
    assert math.isclose(flat.high, 0.975, abs_tol=1e-9)
    assert flat.mean == 0.5
    # Beta(2, 1) has CDF x**2, so its quantiles are square roots.
    one = stats.click_through_interval(1, 1)
    assert math.isclose(one.low, math.sqrt(0.025), rel_tol=1e-9)
    assert math.isclose(one.high, math.sqrt(0.975), rel_tol=1e-9)
    # Beta(1, n + 1) has CDF 1 - (1 - x)**(n + 1).
    none = stats.click_through_interval(0, 1000)
    assert math.isclose(none.high, 1 - 0.025 ** (1 / 1001), rel_tol=1e-8)
    some = stats.click_through_interval(50, 1000)
    assert some.low < 0.05 < some.high
    assert some.high - some.low < 0.03
    # With many impressions the posterior is close to normal: mean +- 1.96 sd.
    many = stats.click_through_interval(50_000, 1_000_000)
    sd = math.sqrt(0.05 * 0.95 / 1_000_000)
    assert math.isclose(many.low, 0.05 - 1.96 * sd, abs_tol=2e-5)
    assert math.isclose(many.high, 0.05 + 1.96 * sd, abs_tol=2e-5)


def test_credible_intervals_are_monotonic():
    by_clicks = [stats.click_through_interval(c, 200) for c in range(0, 201, 10)]
    for before, after in itertools.pairwise(by_clicks):
        assert after.low > before.low and after.high > before.high
    widths = [
        (lambda i: i.high - i.low)(stats.click_through_interval(n // 20, n))
        for n in (20, 100, 1000, 10_000)
    ]
    assert widths == sorted(widths, reverse=True)
    for p in (0.001, 0.2, 0.5, 0.9, 0.999):
        x = stats.beta_quantile(p, 3.0, 40.0)
        assert math.isclose(stats.beta_cdf(x, 3.0, 40.0), p, abs_tol=1e-10)
    assert stats.click_through_interval(7, 3) == stats.click_through_interval(3, 3)


def test_dashboard_shows_click_through_per_approved_variant(shop, editor):
    best = variant(shop["banner"], shop["runners"], "approved", impressions=1000, clicks=80)
    variant(shop["banner"], shop["runners"], "approved", impressions=1000, clicks=20)
    variant(shop["banner"], shop["everyone"], "pending", impressions=50, clicks=5)
    rows, total = stats.click_through()
    assert total == 2 and rows[0].variant.pk == best.pk
    html = editor.get(DASHBOARD).content.decode()
    assert "8.00%" in html and "2.00%" in html
    low = stats.click_through_interval(80, 1000).low
    assert f"{low:.2%} to" in html


# Charts -------------------------------------------------------------------------------------


def test_charts_are_well_formed_svg_with_escaped_labels():
    nasty = 'Shoes & <socks> "quoted"'
    pictures = [
        charts.horizontal_bars([(nasty, 3), ("b", 0), ("c", -1)], title=nasty),
        charts.horizontal_bars([], title="empty"),
        charts.interval_plot([charts.Interval(nasty, 0.01, 0.02, 0.05, "2/100")], title="x"),
        charts.interval_plot([], title="empty"),
        charts.progress_bar(0.4),
        charts.progress_bar(7),
    ]
    for svg in pictures:
        root = ET.fromstring(svg)
        assert root.tag == "{http://www.w3.org/2000/svg}svg"
    texts = [t.text for t in ET.fromstring(pictures[0]).iter("{http://www.w3.org/2000/svg}text")]
    assert 'Shoes & <socks> "quot…' in texts
    bars = ET.fromstring(pictures[0]).findall("{http://www.w3.org/2000/svg}rect")
    widths = [float(bar.get("width")) for bar in bars[1::2]]  # the filled bar after each track
    assert widths[0] > 0 and widths[1] == 0 and widths[2] == 0
    progress = ET.fromstring(pictures[5]).findall("{http://www.w3.org/2000/svg}rect")
    assert progress[1].get("width") == progress[0].get("width")  # clamped to full


def test_every_svg_on_the_dashboard_parses(known_cells, editor):
    for slot in (known_cells["banner"], known_cells["copy"]):
        variant(slot, known_cells["runners"], "approved", impressions=10, clicks=1)
    job = service.create_job(known_cells["banner"], known_cells["everyone"], 2)
    GenerationJob.objects.filter(pk=job.pk).update(
        status=GenerationJob.Status.RUNNING, progress=0.5
    )
    html = editor.get(DASHBOARD).content.decode()
    svgs = SVG.findall(html)
    assert len(svgs) >= 4  # two interval plots, segment sizes, progress bars
    for svg in svgs:
        ET.fromstring(svg)
    sizes = next(s for s in svgs if "Visitors per active segment" in s)
    assert "Everyone" in sizes and "Runners" in sizes and "Retired" not in sizes


def test_dashboard_queries_do_not_grow_with_the_data(shop, editor):
    def count_queries() -> int:
        with CaptureQueriesContext(connection) as queries:
            assert editor.get(DASHBOARD).status_code == 200
        return len(queries)

    variant(shop["banner"], shop["runners"], "approved", impressions=10, clicks=1)
    small = count_queries()
    for index in range(5):
        segment = Segment.objects.create(key=f"s{index}", name=f"S{index}", size=index)
        for slot in (shop["banner"], shop["copy"]):
            variant(slot, segment, "approved", impressions=100, clicks=index)
            variant(slot, segment, "pending")
            job = service.create_job(slot, segment, 2)
            if index % 2:
                GenerationJob.objects.filter(pk=job.pk).update(status="failed", error="boom")
    assert count_queries() == small
    assert small <= 10  # session, user, 4 for coverage, 2 click-through, 2 queue


# Slot admin ---------------------------------------------------------------------------------


def test_slot_admin_lists_counts_and_previews_the_fallback(known_cells, editor):
    slot = known_cells["banner"]
    slot.fallback = {
        "headline": "Spring <sale>",
        "body": "Everything for your run",
        "cta": "Shop now",
        "image": "https://cdn.example.com/hero.jpg",
    }
    slot.save()
    listing = editor.get("/admin/aigc_django/slot/").content.decode()
    row = re.search(r"<tr>.*?home-hero.*?</tr>", listing, re.S).group(0)
    cells = re.findall(r'class="field-(approved_count|pending_count)">(\d+)<', row)
    assert dict(cells) == {"approved_count": "3", "pending_count": "1"}
    assert "600x200, 300x250" in row
    assert 'href="/admin/aigc_django/slot/dashboard/"' in listing

    page = editor.get(f"/admin/aigc_django/slot/{slot.pk}/change/").content.decode()
    boxes = re.findall(r'data-size="(\d+)x(\d+)" style="[^"]*width:(\d+)px;height:(\d+)px', page)
    assert [(int(w), int(h)) for w, h, *_ in boxes] == [(600, 200), (300, 250)]
    for width, height, shown_width, shown_height in boxes:
        assert math.isclose(
            int(shown_width) / int(shown_height), int(width) / int(height), rel_tol=0.02
        )
    assert "Spring &lt;sale&gt;" in page and "Spring <sale>" not in page
    assert 'src="https://cdn.example.com/hero.jpg"' in page

    slot.fallback = {"headline": "x" * 70, "image": "javascript:alert(1)"}
    slot.save()
    page = editor.get(f"/admin/aigc_django/slot/{slot.pk}/change/").content.decode()
    assert "javascript:" not in page.split('name="fallback"')[0].split("aigc-preview")[-1]
    assert "headline has 70 characters; the slot allows 50." in page


def test_slot_admin_form_validates_sizes(shop, editor):
    slot = shop["banner"]
    form = {
        "key": slot.key,
        "name": slot.name,
        "kind": "banner",
        "active": "on",
        "link": "",
        "sizes": "[[600, 2]]",
        "copy_fields": '{"headline": 50}',
        "variants_per_segment": "2",
        "brief": "",
        "fallback": "{}",
    }
    bad = editor.post(f"/admin/aigc_django/slot/{slot.pk}/change/", form)
    assert bad.status_code == 200 and "within 16..8192 pixels" in bad.content.decode()
    good = editor.post(
        f"/admin/aigc_django/slot/{slot.pk}/change/", {**form, "sizes": "[[640, 320]]"}
    )
    assert good.status_code == 302
    slot.refresh_from_db()
    assert slot.sizes == [[640, 320]]


# Job admin ----------------------------------------------------------------------------------


def test_retry_requeues_failed_and_stuck_jobs_only(
    shop, editor, django_capture_on_commit_callbacks
):
    failed = service.create_job(shop["copy"], shop["runners"], 2)
    service.mark_failed(failed.pk, "RuntimeError: the GPU fell over\nTraceback ...")
    fresh = service.create_job(shop["copy"], shop["everyone"], 1)
    stuck = service.create_job(shop["banner"], shop["everyone"], 1)
    GenerationJob.objects.filter(pk=stuck.pk).update(created_at=timezone.now() - timedelta(hours=2))

    listing = editor.get("/admin/aigc_django/generationjob/").content.decode()
    assert "RuntimeError: the GPU fell over" in listing and "Traceback" not in listing
    assert len(SVG.findall(listing)) == 3  # a progress bar per job
    assert editor.get("/admin/aigc_django/generationjob/add/").status_code == 403

    with django_capture_on_commit_callbacks(execute=True):
        response = editor.post(
            "/admin/aigc_django/generationjob/",
            {"action": "retry_jobs", "_selected_action": [failed.pk, fresh.pk, stuck.pk]},
            follow=True,
        )
    html = response.content.decode()
    assert "Queued 2 jobs again." in html and "Skipped 1 job" in html
    failed.refresh_from_db()
    assert failed.status == GenerationJob.Status.SUCCEEDED and failed.error == ""
    assert failed.variants.count() == 2
    stuck.refresh_from_db()
    assert stuck.status == GenerationJob.Status.SUCCEEDED
    fresh.refresh_from_db()
    assert fresh.status == GenerationJob.Status.QUEUED and not fresh.variants.exists()

    page = editor.get(f"/admin/aigc_django/generationjob/{failed.pk}/change/").content.decode()
    assert 'name="_save"' not in page and "succeeded" in page


# Segment admin ------------------------------------------------------------------------------


def test_segment_admin_shows_top_items_and_a_member_sample(shop, editor):
    runners = shop["runners"]
    for index in range(25):
        visitor = Visitor.objects.create()
        Profile.objects.create(
            visitor=visitor,
            segment=runners,
            frequency=index,
            monetary=10.5 * index,
            recency_days=float(index),
            interests={"running-shoes": 0.9, "socks": 0.1 * index, "books": 0.0},
            device="mobile",
            referrer="https://private-referrer.example/",
        )
    recent = Profile.objects.get(recency_days=0.0).visitor_id
    oldest = Profile.objects.get(recency_days=24.0).visitor_id
    page = editor.get(f"/admin/aigc_django/segment/{runners.pk}/change/").content.decode()
    assert page.index("Trail Runner 2") < page.index("Trail Runner 0")
    assert "(not in the catalog)" in page  # GONE
    assert "Running shoes" in page and "Socks" in page
    svg = next(s for s in SVG.findall(page) if "Top categories" in s)
    ET.fromstring(svg)
    assert str(recent) in page and str(oldest) not in page  # the 20 most recent of 25
    assert "The 20 most recently active of 120 members." in page
    assert "private-referrer" not in page and "mobile" not in page

    everyone = Segment.objects.get(key="everyone")
    page = editor.get(f"/admin/aigc_django/segment/{everyone.pk}/change/").content.decode()
    assert "No members yet." in page
