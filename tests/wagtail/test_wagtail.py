"""aigc_django.contrib.wagtail against a real Wagtail install: the SlotBlock in the page editor
and on a served page, and the review queue in the Wagtail admin menu.

Runs under tests.settings_wagtail only: ``pytest --ds=tests.settings_wagtail tests/wagtail``.
"""

from __future__ import annotations

import copy
import json

import pytest
from django.contrib.auth.models import Permission, User
from django.test import Client, RequestFactory
from django.urls import reverse
from wagtail.admin.menu import admin_menu
from wagtail.models import Page, Site
from wagtail.test.utils.form_data import nested_form_data, streamfield

from aigc_django.contrib.wagtail.blocks import SlotBlock
from aigc_django.models import Segment, Slot, Variant
from tests.wagtail.pages.models import LandingPage

pytestmark = pytest.mark.django_db

QUEUE_URL = "/admin/aigc_django/variant/"


def rendition(name: str, width: int = 1200, height: int = 628) -> dict:
    return {
        "width": width,
        "height": height,
        "files": [{"name": name, "width": width, "height": height, "format": "WEBP"}],
    }


@pytest.fixture
def everyone() -> Segment:
    """The segment every visitor falls back to (the app's migrations create it)."""
    return Segment.objects.get(kind=Segment.Kind.EVERYONE)


@pytest.fixture
def hero(everyone: Segment) -> Slot:
    """A banner slot with one approved and one pending variant for everyone."""
    slot = Slot.objects.create(
        key="home-hero", name="Home hero", kind=Slot.Kind.BANNER, sizes=[[1200, 628]]
    )
    Variant.objects.create(
        slot=slot,
        segment=everyone,
        status=Variant.Status.APPROVED,
        copy={"headline": "Approved headline"},
        image="aigc/variants/approved-1200.webp",
        renditions={"1200x628": rendition("aigc/variants/approved-1200.webp")},
        alt_text="Approved banner",
    )
    Variant.objects.create(
        slot=slot,
        segment=everyone,
        status=Variant.Status.PENDING,
        copy={"headline": "Pending headline"},
        image="aigc/variants/pending-1200.webp",
        renditions={"1200x628": rendition("aigc/variants/pending-1200.webp")},
        alt_text="Pending banner",
    )
    return slot


@pytest.fixture
def tagline(everyone: Segment) -> Slot:
    """A copy slot with one approved variant for everyone."""
    slot = Slot.objects.create(
        key="tagline", name="Tagline", kind=Slot.Kind.COPY, copy_fields={"headline": 60}
    )
    Variant.objects.create(
        slot=slot,
        segment=everyone,
        status=Variant.Status.APPROVED,
        copy={"headline": "Fresh for <you>"},
    )
    return slot


def home() -> Page:
    return Site.objects.get(is_default_site=True).root_page


def publish(body: list[dict], title: str = "Landing") -> LandingPage:
    # Wagtail adds block ids to the list it is given: keep the caller's list as it was.
    page = LandingPage(title=title, slug=title.lower(), body=copy.deepcopy(body))
    home().add_child(instance=page)
    page.save_revision().publish()
    return page


def make_user(username: str, *perms: str, staff: bool = True) -> User:
    user = User.objects.create_user(username, password="pw", is_staff=staff)
    for perm in perms:
        app_label, codename = perm.split(".")
        user.user_permissions.add(
            Permission.objects.get(content_type__app_label=app_label, codename=codename)
        )
    return user


def client_for(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


# The block in the page editor -----------------------------------------------------------------


def test_block_choices_are_the_active_slots_read_at_form_time(hero, tagline):
    Slot.objects.create(key="retired", name="Retired", active=False)
    # The page model's block was built at import time, before these slots existed.
    slot_choice = LandingPage.body.field.stream_block.child_blocks["slot"].child_blocks["slot"]
    choices = dict(slot_choice.field.choices)
    assert choices == {
        "": choices[""],  # Wagtail's blank "select an option"
        "home-hero": "Home hero (home-hero)",
        "tagline": "Tagline (tagline)",
    }


def test_page_editor_offers_the_active_slots(hero):
    Slot.objects.create(key="retired", name="Retired slot", active=False)
    admin = User.objects.create_superuser("admin", password="pw")
    url = reverse("wagtailadmin_pages:add", args=["aigc_test_pages", "landingpage", home().pk])
    response = client_for(admin).get(url)
    assert response.status_code == 200
    content = response.content.decode()
    assert "Personalized slot" in content
    assert "Home hero (home-hero)" in content
    assert "Retired slot" not in content


def slot_form_data(slot: str, size: str = "", field: str = "") -> dict:
    return nested_form_data(
        {
            "title": "Spring",
            "slug": "spring",
            "body": streamfield([("slot", {"slot": slot, "size": size, "field": field})]),
            "action-publish": "publish",
        }
    )


def test_an_editor_adds_a_slot_block_through_the_wagtail_admin(hero, browser):
    admin = User.objects.create_superuser("admin", password="pw")
    url = reverse("wagtailadmin_pages:add", args=["aigc_test_pages", "landingpage", home().pk])
    response = client_for(admin).post(url, slot_form_data("home-hero", size="1200x628"))
    assert response.status_code == 302, response.content.decode()[:2000]
    page = LandingPage.objects.get(slug="spring")
    assert page.live
    assert page.body.raw_data[0]["type"] == "slot"
    assert page.body.raw_data[0]["value"] == {"slot": "home-hero", "size": "1200x628", "field": ""}
    assert "approved-1200" in browser.get(page.url).content.decode()


@pytest.mark.parametrize(
    ("slot", "size", "field", "error"),
    [
        ("home-hero", "1200x400", "", "This slot&#x27;s sizes are 1200x628."),
        ("home-hero", "big", "", "Give the size as WIDTHxHEIGHT"),
        ("tagline", "", "", "Choose which copy field to show."),
        ("tagline", "", "body", "This slot&#x27;s copy fields are headline."),
        ("tagline", "300x250", "headline", "Copy slots have no banner sizes."),
        ("no-such-slot", "", "", "Select a valid choice."),
    ],
)
def test_the_editor_is_told_of_a_size_or_field_the_slot_lacks(
    hero, tagline, slot, size, field, error
):
    admin = User.objects.create_superuser("admin", password="pw")
    url = reverse("wagtailadmin_pages:add", args=["aigc_test_pages", "landingpage", home().pk])
    response = client_for(admin).post(url, slot_form_data(slot, size=size, field=field))
    assert response.status_code == 200
    assert error in response.content.decode()
    assert not LandingPage.objects.exists()


def test_streamfield_round_trips_through_wagtails_json(hero, tagline):
    body = [
        {"type": "slot", "value": {"slot": "home-hero", "size": "1200x628", "field": ""}},
        {"type": "slot", "value": {"slot": "tagline", "size": "", "field": "headline"}},
    ]
    page = publish(body)
    stored = LandingPage.objects.get(pk=page.pk).body
    assert [child.block_type for child in stored] == ["slot", "slot"]
    assert stored[0].value["slot"] == "home-hero"
    assert stored[1].value["field"] == "headline"
    # Out to JSON and back, as Wagtail stores it and as the revision (and API) carries it.
    stream_block = LandingPage.body.field.stream_block
    as_json = json.dumps(stream_block.get_prep_value(stored))
    again = stream_block.to_python(json.loads(as_json))
    assert [dict(child.value) for child in again] == [dict(child.value) for child in stored]
    assert [{"type": c["type"], "value": c["value"]} for c in json.loads(as_json)] == body
    revision = LandingPage.objects.get(pk=page.pk).latest_revision.as_object()
    assert [dict(child.value) for child in revision.body] == [c["value"] for c in body]


# The block on a served page -------------------------------------------------------------------


def test_a_visitor_sees_the_approved_banner_and_copy(hero, tagline, browser):
    page = publish(
        [
            {"type": "text", "value": "<p>Welcome</p>"},
            {"type": "slot", "value": {"slot": "home-hero", "size": "1200x628", "field": ""}},
            {"type": "slot", "value": {"slot": "tagline", "size": "", "field": "headline"}},
        ]
    )
    response = browser.get(page.url)
    assert response.status_code == 200
    content = response.content.decode()
    assert "Welcome" in content
    assert "approved-1200" in content
    assert "Approved banner" in content
    assert "pending-1200" not in content
    # Generated copy is escaped like any other text.
    assert "Fresh for &lt;you&gt;" in content


@pytest.mark.parametrize("deleted", [True, False], ids=["deleted slot", "unknown slot"])
def test_a_missing_slot_renders_nothing_and_the_page_still_serves(hero, browser, deleted):
    page = publish(
        [
            {"type": "text", "value": "<p>Welcome</p>"},
            {"type": "slot", "value": {"slot": "home-hero" if deleted else "no-such-slot"}},
        ]
    )
    if deleted:
        assert "approved-1200" in browser.get(page.url).content.decode()
        hero.delete()
    response = browser.get(page.url)
    assert response.status_code == 200
    content = response.content.decode()
    assert "Welcome" in content
    assert "<img" not in content
    assert "approved-1200" not in content


def test_the_block_renders_without_a_request(hero):
    # Rendered as {{ page.body }} rather than with include_block, the block has no request:
    # it shows what everyone sees.
    block = SlotBlock()
    html = block.render(block.to_python({"slot": "home-hero", "size": "", "field": ""}))
    assert "approved-1200" in html
    assert "pending-1200" not in html


# The review queue in the Wagtail admin ------------------------------------------------------


def test_content_review_is_in_the_wagtail_menu_for_a_user_who_may_view_variants(hero):
    editor = make_user("editor", "wagtailadmin.access_admin", "aigc_django.view_variant")
    client = client_for(editor)
    dashboard = client.get(reverse("wagtailadmin_home"))
    assert dashboard.status_code == 200
    # The sidebar's props carry the item; one variant of the hero slot is pending.
    assert '"Content review (1)"' in dashboard.content.decode()
    assert f'"{QUEUE_URL}"' in dashboard.content.decode()
    queue = client.get(QUEUE_URL)
    assert queue.status_code == 200
    assert "Pending headline" in queue.content.decode()


def test_the_menu_item_links_to_the_queue_with_the_pending_count(hero, everyone):
    editor = make_user("editor", "wagtailadmin.access_admin", "aigc_django.view_variant")
    request = RequestFactory().get(reverse("wagtailadmin_home"))
    request.user = editor
    (item,) = [
        item
        for item in admin_menu.menu_items_for_request(request)
        if item.name == "aigc-content-review"
    ]
    component = item.render_component(request)
    assert component.url == QUEUE_URL == reverse("admin:aigc_django_variant_changelist")
    assert component.label == "Content review (1)"
    Variant.objects.update(status=Variant.Status.APPROVED)
    assert item.render_component(request).label == "Content review"


def shown_menu_items(user: User) -> set[str]:
    request = RequestFactory().get(reverse("wagtailadmin_home"))
    request.user = user
    return {item.name for item in admin_menu.menu_items_for_request(request)}


def test_a_reviewer_sees_content_review_too():
    reviewer = make_user("reviewer", "wagtailadmin.access_admin", "aigc_django.review_variant")
    assert "aigc-content-review" in shown_menu_items(reviewer)


@pytest.mark.parametrize(
    ("perms", "staff"),
    [
        (["wagtailadmin.access_admin"], True),
        (["wagtailadmin.access_admin", "aigc_django.view_variant"], False),
    ],
    ids=["no variant permission", "not staff"],
)
def test_content_review_is_hidden_from_users_who_cannot_open_the_queue(hero, perms, staff):
    user = make_user("writer", *perms, staff=staff)
    shown = shown_menu_items(user)
    assert "help" in shown  # the rest of the menu is there
    assert "aigc-content-review" not in shown
    dashboard = client_for(user).get(reverse("wagtailadmin_home"))
    assert dashboard.status_code == 200
    assert "Content review" not in dashboard.content.decode()
    assert QUEUE_URL not in dashboard.content.decode()
