"""The review queue in a real browser: headless Chromium (Playwright) against the live server.

An editor logs in, approves a pending banner in the queue and sees it on the storefront; a
staff user without the review permission cannot approve; two editors deciding on the same
variant at once get a conflict instead of overwriting each other. Screenshots land in
test-artifacts/screenshots/<test name>/.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import pytest
from django.contrib.auth.models import Permission, User
from playwright.sync_api import Locator, Page, expect

from aigc_django.generation import service
from aigc_django.models import Review, Slot, Variant
from aigc_django.profiles.build import ensure_everyone
from tests.shopapp.models import Category, Product

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PASSWORD = "browser-test-password"
DECISION_BUTTONS = ["Approve", "Reject", "Archive", "Regenerate"]


@pytest.fixture(autouse=True)
def _dummy_backends(dummy_backends):
    """Every test here generates with the dummy backends (tests/conftest.py)."""


@pytest.fixture
def pending(dummy_backends) -> Variant:
    """A pending banner for everyone on the home-hero slot, with real images on disk."""
    shoes = Category.objects.create(slug="running-shoes", name="Running shoes")
    for i in range(3):
        Product.objects.create(
            sku=f"S{i}", name=f"Trail Runner {i}", price=Decimal("89.90"), category=shoes
        )
    slot = Slot.objects.create(
        key="home-hero",
        name="Home hero",
        kind=Slot.Kind.BANNER,
        sizes=[[600, 200]],
        copy_fields={"headline": 50, "body": 120, "cta": 20},
        variants_per_segment=1,
    )
    (variant,) = service.generate_for(slot, ensure_everyone(), 1)
    assert variant.status == Variant.Status.PENDING
    assert variant.image and variant.copy["headline"]
    return variant


def staff_user(username: str, *, can_review: bool) -> User:
    """A staff user who may view every model of the app, and review variants if asked."""
    user = User.objects.create_user(username, password=PASSWORD, is_staff=True)
    permissions = Permission.objects.filter(
        content_type__app_label="aigc_django", codename__startswith="view_"
    )
    user.user_permissions.add(*permissions)
    if can_review:
        user.user_permissions.add(
            Permission.objects.get(content_type__app_label="aigc_django", codename="review_variant")
        )
    return user


def log_in(page: Page, base_url: str, username: str) -> None:
    page.goto(f"{base_url}/admin/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page.locator("#user-tools")).to_contain_text(username, ignore_case=True)


def admin_css_loaded(page: Page) -> bool:
    return page.evaluate(
        """() => [...document.styleSheets].some(
            (sheet) => (sheet.href || "").includes("/static/admin/css/base.css")
                && sheet.cssRules.length > 0)"""
    )


def natural_width(image: Locator) -> int:
    """The decoded width of the image once it has loaded (it may be lazy); 0 when it failed."""
    image.scroll_into_view_if_needed()
    return image.evaluate(
        """(img) => img.complete ? img.naturalWidth : new Promise((done) => {
            img.addEventListener("load", () => done(img.naturalWidth));
            img.addEventListener("error", () => done(0));
        })"""
    )


def queue_url(base_url: str) -> str:
    return f"{base_url}/admin/aigc_django/variant/"


def review_url(base_url: str, variant: Variant) -> str:
    return f"{base_url}/admin/aigc_django/variant/{variant.pk}/change/"


def queue_row(page: Page, base_url: str, variant: Variant) -> Locator:
    """Open the queue (its admin CSS must load) and return the variant's row, by headline."""
    page.goto(queue_url(base_url))
    assert admin_css_loaded(page), "the admin's CSS did not load from the live server"
    row = page.locator("#result_list tbody tr").filter(has_text=variant.copy["headline"])
    expect(row).to_have_count(1)
    return row


def test_editor_approves_in_the_queue_and_the_store_shows_the_banner(
    live_server, chromium_page: Page, screenshots: Path, pending: Variant
) -> None:
    base = live_server.url
    page = chromium_page
    headline = pending.copy["headline"]
    staff_user("editor", can_review=True)

    page.goto(f"{base}/store/")
    expect(page.locator("#slot .variant")).to_have_count(0)  # nothing before approval
    log_in(page, base, "editor")

    row = queue_row(page, base, pending)
    thumbnail = row.locator("img").first
    expect(thumbnail).to_be_visible()
    assert natural_width(thumbnail) > 0, "the queue's thumbnail did not load"
    page.screenshot(path=screenshots / "1-queue.png", full_page=True)

    row.locator(f'a[href*="/variant/{pending.pk}/change/"]').first.click()
    expect(page).to_have_url(review_url(base, pending))
    expect(page.locator("#variant-summary .aigc-status")).to_have_text("pending")
    expect(page.locator("#slot-preview .aigc-mock-headline")).to_have_text(headline)
    assert natural_width(page.locator("#renditions img").first) == 600
    expect(page.get_by_role("button", name="Approve", exact=True)).to_be_visible()
    page.screenshot(path=screenshots / "2-review.png", full_page=True)

    page.get_by_role("button", name="Approve", exact=True).click()
    expect(page).to_have_url(review_url(base, pending))
    expect(page.locator(".messagelist .success")).to_have_text(f"Variant #{pending.pk} approved.")
    expect(page.locator("#variant-summary .aigc-status")).to_have_text("approved")
    page.screenshot(path=screenshots / "3-approved.png", full_page=True)
    pending.refresh_from_db()
    assert pending.status == Variant.Status.APPROVED
    review = Review.objects.get(variant=pending)
    assert (review.reviewer.username, review.status_before, review.status_after) == (
        "editor",
        Variant.Status.PENDING,
        Variant.Status.APPROVED,
    )

    page.goto(f"{base}/store/?slot=home-hero")
    shown = page.locator(f'#slot .variant[data-variant="{pending.pk}"]')
    expect(shown.locator(".headline")).to_have_text(headline)
    banner = shown.locator("img.banner")
    assert banner.evaluate("(img) => img.currentSrc").endswith(pending.image.url)
    assert natural_width(banner) == 600, "the approved banner did not load from MEDIA_ROOT"
    page.screenshot(path=screenshots / "4-store.png", full_page=True)


def test_staff_without_review_permission_sees_the_queue_but_cannot_approve(
    live_server, chromium_page: Page, screenshots: Path, pending: Variant
) -> None:
    base = live_server.url
    page = chromium_page
    staff_user("viewer", can_review=False)
    log_in(page, base, "viewer")

    row = queue_row(page, base, pending)
    row.locator(f'a[href*="/variant/{pending.pk}/change/"]').first.click()
    expect(page).to_have_url(review_url(base, pending))
    expect(page.locator("#variant-summary .aigc-status")).to_have_text("pending")
    expect(page.locator("#slot-preview .aigc-mock-headline")).to_have_text(pending.copy["headline"])
    expect(page.locator("#decision")).to_be_visible()
    page.screenshot(path=screenshots / "review-read-only.png", full_page=True)
    for label in [*DECISION_BUTTONS, "Save copy"]:
        expect(page.get_by_role("button", name=label, exact=True)).to_have_count(0)
    pending.refresh_from_db()
    assert pending.status == Variant.Status.PENDING


def test_second_editor_gets_a_conflict_instead_of_overwriting_an_approval(
    live_server, new_page: Callable[[str], Page], screenshots: Path, pending: Variant
) -> None:
    base = live_server.url
    staff_user("first", can_review=True)
    staff_user("second", can_review=True)
    first, second = new_page("first"), new_page("second")
    for page, username in [(first, "first"), (second, "second")]:
        log_in(page, base, username)
        page.goto(review_url(base, pending))
        expect(page.get_by_role("button", name="Approve", exact=True)).to_be_visible()

    first.get_by_role("button", name="Approve", exact=True).click()
    expect(first.locator(".messagelist .success")).to_have_text(f"Variant #{pending.pk} approved.")

    second.get_by_role("button", name="Reject", exact=True).click()
    conflict = second.locator(".messagelist .error")
    expect(conflict).to_contain_text("This variant was changed by first")
    expect(conflict).to_contain_text("it is now approved")
    # The page shows the variant as it is now, not as the second editor first saw it.
    expect(second.locator("#variant-summary .aigc-status")).to_have_text("approved")
    second.screenshot(path=screenshots / "conflict.png", full_page=True)

    pending.refresh_from_db()
    assert pending.status == Variant.Status.APPROVED
    assert [
        (r.reviewer.username, r.status_after) for r in Review.objects.filter(variant=pending)
    ] == [("first", Variant.Status.APPROVED)]
