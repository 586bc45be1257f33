"""The tracking script in a real browser: client mode fills placeholders from the slots API
and reports impressions; a click on a banner is counted once (by beacon, not again by the
signed redirect) and lands on the slot's link."""

from __future__ import annotations

import time
from decimal import Decimal
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from playwright.sync_api import expect

from aigc_django.delivery import counters
from aigc_django.generation import backends, service
from aigc_django.models import Slot, Variant
from aigc_django.moderation import review
from aigc_django.profiles.build import ensure_everyone
from tests.shopapp.models import Category, Product

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

DUMMY_COPY = "aigc_django.generation.backends.dummy.DummyCopyBackend"
DUMMY_IMAGE = "aigc_django.generation.backends.dummy.DummyImageBackend"


@pytest.fixture
def approved(aigc, settings, tmp_path: Path) -> Variant:
    settings.MEDIA_ROOT = str(tmp_path / "media")
    aigc(
        COPY_BACKENDS={"default": {"BACKEND": DUMMY_COPY, "OPTIONS": {}}},
        IMAGE_BACKENDS={"default": {"BACKEND": DUMMY_IMAGE}},
        DELIVERY={"CLIENT_MODE": True, "IMPRESSION_BATCH_SECONDS": 0},
    )
    backends.reset()
    shoes = Category.objects.create(slug="running-shoes", name="Running shoes")
    Product.objects.create(sku="S1", name="Trail Runner", price=Decimal("89.90"), category=shoes)
    slot = Slot.objects.create(
        key="home-hero",
        name="Home hero",
        kind=Slot.Kind.BANNER,
        sizes=[[600, 200]],
        copy_fields={"headline": 50, "cta": 20},
        link="/store/landing/",
    )
    (variant,) = service.generate_for(slot, ensure_everyone(), 1)
    editor = User.objects.create_user("editor", is_staff=True)
    review.approve(variant, editor)
    yield variant
    backends.reset()


# The image's width once it has loaded (visible comes before the pixels); 0 if it fails.
NATURAL_WIDTH = """(img) => img.complete && img.naturalWidth ? img.naturalWidth
    : new Promise((done) => {
        if (img.complete && img.naturalWidth) return done(img.naturalWidth);
        img.addEventListener("load", () => done(img.naturalWidth));
        img.addEventListener("error", () => done(0));
    })"""


def wait_for(predicate, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return predicate()


def test_client_mode_fills_the_placeholder_and_counts_one_impression(
    live_server, chromium_page, screenshots, approved
):
    page = chromium_page
    page.goto(f"{live_server.url}/store/client/?slot=home-hero")
    banner = page.locator("#banner img")
    expect(banner).to_be_visible(timeout=10_000)
    assert banner.evaluate(NATURAL_WIDTH) == 600
    expect(page.locator("#headline")).to_contain_text(approved.copy["headline"])
    page.screenshot(path=str(screenshots / "client-mode.png"))
    # The script reports the impression (the server counted none in client mode).
    assert wait_for(lambda: counters.pending_counts([approved.pk])[approved.pk] == (1, 0))
    page.reload()
    expect(page.locator("#banner img")).to_be_visible(timeout=10_000)
    assert wait_for(lambda: counters.pending_counts([approved.pk])[approved.pk] == (2, 0))


def test_a_click_is_counted_once_and_lands_on_the_slot_link(live_server, chromium_page, approved):
    page = chromium_page
    page.goto(f"{live_server.url}/store/client/?slot=home-hero")
    banner = page.locator("#banner img")
    expect(banner).to_be_visible(timeout=10_000)
    banner.click()
    page.wait_for_url(f"{live_server.url}/store/landing/")
    expect(page.locator("h1")).to_have_text("Landing")
    assert wait_for(lambda: counters.pending_counts([approved.pk])[approved.pk][1] == 1)
    time.sleep(1)  # a second count (beacon and redirect both) would show by now
    assert counters.pending_counts([approved.pk])[approved.pk][1] == 1
