"""The moderation stage: the review queue in the admin, permissions, decisions and their audit
trail, copy edits, concurrent editors, auto-approval, signals and check E019."""

from __future__ import annotations

import re
from decimal import Decimal

import pytest
from django.contrib.auth.models import Permission, User
from django.core.files.storage import default_storage
from django.test import Client, override_settings

from aigc_django.checks import check_moderation
from aigc_django.generation import service
from aigc_django.models import Review, Segment, Slot, Variant
from aigc_django.moderation import review
from aigc_django.signals import variant_approved, variant_rejected, variant_reviewed
from tests import settings as test_settings
from tests.shopapp.models import Category
from tests.shopapp.models import Product as ShopProduct

pytestmark = pytest.mark.django_db

CHANGELIST = "/admin/aigc_django/variant/"


def page(variant: Variant) -> str:
    return f"/admin/aigc_django/variant/{variant.pk}/change/"


DUMMY_GENERATION = {"RENDITION_WIDTHS": [200]}


@pytest.fixture(autouse=True)
def _dummy_backends(dummy_backends):
    """Every test here generates with the dummy backends (tests/conftest.py)."""


@pytest.fixture
def shop():
    shoes = Category.objects.create(slug="running-shoes", name="Running shoes")
    for i in range(3):
        ShopProduct.objects.create(
            sku=f"S{i}", name=f"Trail Runner {i}", price=Decimal(f"{80 + i}.90"), category=shoes
        )
    runners = Segment.objects.create(
        key="runners", name="Runners", top_categories=[["running-shoes", 0.8]]
    )
    copy_slot = Slot.objects.create(
        key="home-copy",
        name="Home copy",
        kind=Slot.Kind.COPY,
        copy_fields={"headline": 50, "cta": 20},
    )
    banner = Slot.objects.create(
        key="home-hero",
        name="Home hero",
        kind=Slot.Kind.BANNER,
        sizes=[[400, 160]],
        copy_fields={"headline": 50, "body": 120, "cta": 20},
        brief="Spring running season",
    )
    return {"runners": runners, "copy": copy_slot, "banner": banner}


def make_user(username: str, *perms: str, superuser: bool = False) -> User:
    user = User.objects.create_user(username, password="pw", is_staff=True)
    if superuser:
        user.is_superuser = True
        user.save()
    for codename in perms:
        user.user_permissions.add(Permission.objects.get(codename=codename))
    return user


def client_for(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def editor() -> User:
    return make_user("alice", "review_variant")


@pytest.fixture
def looker() -> User:
    return make_user("viewer", "view_variant")


def copy_variants(shop, count: int = 1) -> list[Variant]:
    return service.generate_for(shop["copy"], shop["runners"], count)


def banner_variant(shop) -> Variant:
    (variant,) = service.generate_for(shop["banner"], shop["runners"], 1)
    return variant


def messages_of(response) -> list[str]:
    return [str(m) for m in response.context["messages"]] if response.context else []


# Permissions ---------------------------------------------------------------------------------


def test_staff_without_review_permission_can_look_but_not_decide(shop, looker):
    (variant,) = copy_variants(shop)
    client = client_for(looker)
    response = client.get(CHANGELIST)
    assert response.status_code == 200
    assert variant.copy["headline"] in response.text
    assert "Approve selected variants" not in response.text
    response = client.get(page(variant))
    assert response.status_code == 200
    assert variant.copy["headline"] in response.text
    assert "You can look at this variant" in response.text
    for text in ("Approve", "Reject", "Archive", "Regenerate", "Save copy"):
        assert f">{text}</button>" not in response.text
    response = client.post(page(variant), {"action": "approve", "version": 1})
    assert response.status_code == 403
    response = client.post(
        page(variant), {"action": "save_copy", "version": 1, "copy_headline": "Mine now"}
    )
    assert response.status_code == 403
    client.post(CHANGELIST, {"action": "approve_selected", "_selected_action": [variant.pk]})
    variant.refresh_from_db()
    assert variant.status == Variant.Status.PENDING and variant.copy["headline"] != "Mine now"
    assert not Review.objects.exists()


def test_staff_without_any_variant_permission_gets_403(shop):
    (variant,) = copy_variants(shop)
    client = client_for(make_user("nobody"))
    assert client.get(CHANGELIST).status_code == 403
    assert client.get(page(variant)).status_code == 403


def test_reviewer_sees_the_buttons_and_the_version(shop, editor):
    (variant,) = copy_variants(shop)
    response = client_for(editor).get(page(variant))
    assert response.status_code == 200
    for text in ("Approve", "Reject", "Archive", "Regenerate", "Save copy"):
        assert f">{text}</button>" in response.text
    assert '<input type="hidden" name="version" value="1">' in response.text
    assert 'name="copy_headline" maxlength="50"' in response.text
    response = client_for(editor).get(CHANGELIST)
    assert "Approve selected variants" in response.text


def test_no_add_and_delete_only_for_superusers(shop, editor):
    (variant,) = copy_variants(shop)
    assert client_for(editor).get(f"{CHANGELIST}add/").status_code == 403
    assert client_for(editor).get(f"{page(variant)[:-7]}delete/").status_code == 403
    boss = make_user("boss", superuser=True)
    assert client_for(boss).get(f"{CHANGELIST}add/").status_code == 403
    assert client_for(boss).get(f"{page(variant)[:-7]}delete/").status_code == 200


def test_decisions_need_the_csrf_token(shop, editor):
    (variant,) = copy_variants(shop)
    client = Client(enforce_csrf_checks=True)
    client.force_login(editor)
    response = client.post(page(variant), {"action": "approve", "version": 1})
    assert response.status_code == 403
    variant.refresh_from_db()
    assert variant.status == Variant.Status.PENDING


# Decisions on the review page ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("action", "status", "verb"),
    [
        ("approve", Variant.Status.APPROVED, "approved"),
        ("reject", Variant.Status.REJECTED, "rejected"),
        ("archive", Variant.Status.ARCHIVED, "archived"),
    ],
)
def test_a_decision_writes_one_review_and_shows_in_the_history(shop, editor, action, status, verb):
    (variant,) = copy_variants(shop)
    client = client_for(editor)
    response = client.post(
        page(variant), {"action": action, "version": 1, "note": "Checked the facts"}, follow=True
    )
    assert response.status_code == 200
    assert f"Variant #{variant.pk} {verb}." in messages_of(response)
    variant.refresh_from_db()
    assert variant.status == status
    assert variant.version == 2 and variant.reviewed_at is not None
    (row,) = Review.objects.filter(variant=variant)
    assert (row.reviewer, row.action, row.status_before, row.status_after, row.note) == (
        editor,
        action,
        "pending",
        status,
        "Checked the facts",
    )
    history = response.text.split('id="history"')[1].split("</section>")[0]
    assert "alice" in history and "Checked the facts" in history
    assert f"pending &rarr; {status}" in history
    assert '<input type="hidden" name="version" value="2">' in response.text


def test_buttons_follow_the_status(shop, editor):
    (variant,) = copy_variants(shop)
    review.archive(variant, editor)
    response = client_for(editor).get(page(variant))
    for text in ("Approve", "Reject", "Archive"):
        assert f">{text}</button>" not in response.text
    assert ">Regenerate</button>" in response.text


def test_an_impossible_decision_is_refused_with_a_message(shop, editor):
    (variant,) = copy_variants(shop)
    review.archive(variant, editor)
    response = client_for(editor).post(
        page(variant), {"action": "approve", "version": variant.version}, follow=True
    )
    assert f"Variant #{variant.pk} is archived: it cannot be approved." in messages_of(response)
    variant.refresh_from_db()
    assert variant.status == Variant.Status.ARCHIVED
    assert Review.objects.filter(variant=variant).count() == 1


def test_regenerate_archives_and_makes_a_new_pending_variant(
    shop, editor, django_capture_on_commit_callbacks
):
    (variant,) = copy_variants(shop)
    with django_capture_on_commit_callbacks(execute=True):
        response = client_for(editor).post(
            page(variant), {"action": "regenerate", "version": 1, "note": "Too bland"}
        )
    assert response.status_code == 302
    variant.refresh_from_db()
    assert variant.status == Variant.Status.ARCHIVED
    (row,) = Review.objects.filter(variant=variant)
    assert (row.action, row.status_before, row.status_after) == (
        "regenerate",
        "pending",
        "archived",
    )
    assert row.note.startswith("Too bland\nA replacement is being generated (job #")
    new = Variant.objects.exclude(pk=variant.pk).get()
    assert (new.slot, new.segment, new.status) == (shop["copy"], shop["runners"], "pending")
    assert new.job_id != variant.job_id


# Bulk actions ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("action", "status", "message"),
    [
        ("approve_selected", "approved", "3 variants approved."),
        ("reject_selected", "rejected", "3 variants rejected."),
        ("archive_selected", "archived", "3 variants archived."),
    ],
)
def test_bulk_actions_write_one_review_per_variant(shop, editor, action, status, message):
    variants = copy_variants(shop, 3)
    data = {"action": action, "_selected_action": [v.pk for v in variants]}
    data.update({f"_version_{v.pk}": v.version for v in variants})
    response = client_for(editor).post(CHANGELIST, data, follow=True)
    assert message in messages_of(response)
    for variant in variants:
        variant.refresh_from_db()
        assert variant.status == status and variant.version == 2
        (row,) = Review.objects.filter(variant=variant)
        assert (row.reviewer, row.status_before, row.status_after) == (editor, "pending", status)


def test_bulk_regenerate_queues_one_replacement_each(
    shop, editor, django_capture_on_commit_callbacks
):
    variants = copy_variants(shop, 2)
    data = {"action": "regenerate_selected", "_selected_action": [v.pk for v in variants]}
    with django_capture_on_commit_callbacks(execute=True):
        client_for(editor).post(CHANGELIST, data)
    assert Variant.objects.filter(status="archived").count() == 2
    assert Variant.objects.filter(status="pending").count() == 2
    assert Review.objects.filter(action="regenerate").count() == 2


def test_bulk_action_reports_variants_changed_since_the_list_loaded(shop, editor):
    first, second = copy_variants(shop, 2)
    review.reject(second, make_user("bob", "review_variant"))  # after alice's list loaded
    data = {
        "action": "approve_selected",
        "_selected_action": [first.pk, second.pk],
        f"_version_{first.pk}": 1,
        f"_version_{second.pk}": 1,
    }
    response = client_for(editor).post(CHANGELIST, data, follow=True)
    texts = messages_of(response)
    assert "1 variant approved." in texts
    assert any(
        t.startswith(f"Variant #{second.pk}: This variant was changed by bob") for t in texts
    )
    second.refresh_from_db()
    assert second.status == "rejected"
    assert list(Review.objects.filter(variant=second).values_list("action", flat=True)) == [
        "reject"
    ]


# The list ----------------------------------------------------------------------------------------


def test_the_queue_lists_pending_flagged_first_with_thumbnails_and_flags(shop, editor, aigc):
    banner = banner_variant(shop)
    approved, plain = copy_variants(shop, 2)
    review.approve(approved, editor)
    Variant.objects.filter(pk=plain.pk).update(
        safety={"ok": False, "flags": [{"code": "url", "field": "headline", "message": "URL"}]}
    )
    client = client_for(editor)
    response = client.get(CHANGELIST)
    assert response.status_code == 200
    order = [v.pk for v in response.context["cl"].result_list]
    assert order == [plain.pk, banner.pk, approved.pk]
    webp = [f for f in banner.renditions["400x160"]["files"] if f["format"] == "WEBP"]
    thumb = min(webp, key=lambda f: f["width"])
    assert thumb["width"] == 200  # the smallest WebP rendition of the first size
    assert f'src="{default_storage.url(thumb["name"])}" width="120"' in response.text
    assert "1 url" in response.text  # the flag count and codes
    assert "dummy v1" in response.text and "seed" in response.text  # provenance
    flagged = client.get(CHANGELIST, {"flagged": "yes"}).context["cl"].result_list
    assert [v.pk for v in flagged] == [plain.pk]
    pending = client.get(CHANGELIST, {"status__exact": "approved"}).context["cl"].result_list
    assert [v.pk for v in pending] == [approved.pk]
    by_backend = client.get(CHANGELIST, {"backend": "dummy"}).context["cl"].result_list
    assert len(by_backend) == 3
    assert client.get(CHANGELIST, {"backend": "other"}).context["cl"].result_list.count() == 0


def test_search_finds_copy_text_and_slot_keys(shop, editor):
    variant, other = copy_variants(shop, 2)
    Variant.objects.filter(pk=variant.pk).update(copy={"headline": "Crème brûlée shoes"})
    client = client_for(editor)
    found = client.get(CHANGELIST, {"q": "brûlée"}).context["cl"].result_list
    assert [v.pk for v in found] == [variant.pk]
    found = client.get(CHANGELIST, {"q": "home-copy"}).context["cl"].result_list
    assert {v.pk for v in found} == {variant.pk, other.pk}
    assert client.get(CHANGELIST, {"q": "nothing-like-it"}).context["cl"].result_list.count() == 0


def test_review_page_shows_renditions_slot_mock_and_live_variants(shop, editor):
    live = banner_variant(shop)
    review.approve(live, editor)
    variant = banner_variant(shop)
    response = client_for(editor).get(page(variant))
    assert response.status_code == 200
    for file in variant.renditions["400x160"]["files"]:
        url = default_storage.url(file["name"])
        assert f'src="{url}" width="{file["width"]}" height="{file["height"]}"' in response.text
    mock = response.text.split('class="aigc-slot-mock"')[1].split("</div>")[0]
    assert variant.copy["headline"] in mock and variant.copy["cta"] in mock
    assert "Spring running season" in response.text  # the slot's brief
    side = response.text.split('id="live-variants"')[1].split("</section>")[0]
    assert f"/admin/aigc_django/variant/{live.pk}/change/" in side
    assert "dummy v1" in response.text


# Editing copy --------------------------------------------------------------------------------


def test_too_long_copy_is_refused_and_nothing_saved(shop, editor):
    (variant,) = copy_variants(shop)
    response = client_for(editor).post(
        page(variant), {"action": "save_copy", "version": 1, "copy_headline": "x" * 51}
    )
    assert response.status_code == 200
    assert "Ensure this has at most 50 characters (it has 51)." in response.text
    assert 'value="' + "x" * 51 + '"' in response.text  # the editor's text is kept
    fresh = Variant.objects.get(pk=variant.pk)
    assert fresh.copy == variant.copy and fresh.version == 1 and not fresh.edited
    assert not Review.objects.exists()


def test_edit_copy_checks_names_and_empty_fields():
    slot = Slot(key="s", name="S", kind=Slot.Kind.COPY, copy_fields={"headline": 10})
    with pytest.raises(review.InvalidCopy) as caught:
        review.clean_copy(Variant(slot=slot), {"headline": "  ", "subtitle": "x"})
    assert caught.value.errors == {
        "headline": "This field cannot be empty.",
        "subtitle": "The slot s has no copy field 'subtitle'.",
    }


def test_saving_copy_marks_edited_needs_approval_and_redraws_the_banner(
    shop, editor, django_capture_on_commit_callbacks
):
    variant = banner_variant(shop)
    review.approve(variant, editor)
    old_copy = dict(variant.copy)
    old_files = {f["name"] for e in variant.renditions.values() for f in e["files"]}
    data = {
        "action": "save_copy",
        "version": variant.version,
        **{f"copy_{k}": v for k, v in old_copy.items()},
        "copy_headline": "Run further this spring",
    }
    with django_capture_on_commit_callbacks(execute=True):
        response = client_for(editor).post(page(variant), data, follow=True)
    assert any(t.startswith("Copy saved.") for t in messages_of(response))
    variant.refresh_from_db()
    assert variant.copy == {**old_copy, "headline": "Run further this spring"}
    assert variant.edited and variant.status == Variant.Status.PENDING
    assert variant.version == 3
    edit = Review.objects.filter(variant=variant, action="edit").get()
    assert (edit.reviewer, edit.status_before, edit.status_after) == (editor, "approved", "pending")
    assert edit.note == f"headline: {old_copy['headline']!r} -> 'Run further this spring'"
    new_files = {f["name"] for e in variant.renditions.values() for f in e["files"]}
    assert new_files and not new_files & old_files
    assert all(default_storage.exists(name) for name in new_files)
    assert variant.alt_text.startswith("Run further this spring")


def test_saving_unchanged_copy_writes_nothing(shop, editor):
    (variant,) = copy_variants(shop)
    data = {
        "action": "save_copy",
        "version": 1,
        **{f"copy_{k}": v for k, v in variant.copy.items()},
    }
    response = client_for(editor).post(page(variant), data, follow=True)
    assert "The copy is unchanged." in messages_of(response)
    variant.refresh_from_db()
    assert variant.version == 1 and not Review.objects.exists()


# Two editors at once -----------------------------------------------------------------------------


def version_on(response) -> int:
    return int(re.search(r'name="version" value="(\d+)"', response.text).group(1))


def test_second_editor_gets_a_clear_message_and_nothing_is_overwritten(shop, editor):
    (variant,) = copy_variants(shop)
    alice, bob = client_for(editor), client_for(make_user("bob", "review_variant"))
    alice_version = version_on(alice.get(page(variant)))
    bob_version = version_on(bob.get(page(variant)))
    assert alice_version == bob_version == 1
    assert (
        alice.post(page(variant), {"action": "approve", "version": alice_version}).status_code
        == 302
    )
    response = bob.post(
        page(variant), {"action": "reject", "version": bob_version, "note": "Off brand"}
    )
    assert response.status_code == 409
    (text,) = messages_of(response)
    assert text.startswith("This variant was changed by alice at ")
    assert text.endswith(
        "while you were looking at it: it is now approved. Reload to see the change."
    )
    assert "Off brand" in response.text  # bob's note is still in the form
    assert version_on(response) == 2  # the page shows the variant as it is now
    variant.refresh_from_db()
    assert variant.status == Variant.Status.APPROVED
    assert Review.objects.filter(variant=variant).count() == 1


def test_a_stale_copy_edit_keeps_the_editors_text(shop, editor):
    (variant,) = copy_variants(shop)
    review.reject(variant, make_user("bob", "review_variant"))
    response = client_for(editor).post(
        page(variant), {"action": "save_copy", "version": 1, "copy_headline": "My better line"}
    )
    assert response.status_code == 409
    assert 'value="My better line"' in response.text
    assert "changed by bob" in messages_of(response)[0]
    variant.refresh_from_db()
    assert variant.copy["headline"] != "My better line" and variant.status == "rejected"


def test_service_raises_review_conflict_on_a_stale_version(shop, editor):
    (variant,) = copy_variants(shop)
    bob = make_user("bob", "review_variant")
    stale = Variant.objects.get(pk=variant.pk)
    review.approve(variant, editor, expected_version=1)
    with pytest.raises(review.ReviewConflict, match=r"changed by alice .* it is now approved"):
        review.reject(stale, bob, expected_version=stale.version)
    with pytest.raises(review.ReviewConflict):
        review.edit_copy(stale, bob, {"headline": "Hello"}, expected_version=1)
    with pytest.raises(review.InvalidTransition, match="is approved: it cannot be approved"):
        review.approve(variant, bob)
    assert Review.objects.filter(variant=variant).count() == 1


# Signals ---------------------------------------------------------------------------------------


@pytest.fixture
def received():
    calls: list[tuple[str, dict]] = []

    def on_approved(sender, **kwargs):
        calls.append(("approved", {"sender": sender, **kwargs}))

    def on_rejected(sender, **kwargs):
        calls.append(("rejected", {"sender": sender, **kwargs}))

    def on_reviewed(sender, **kwargs):
        calls.append(("reviewed", {"sender": sender, **kwargs}))

    variant_approved.connect(on_approved)
    variant_rejected.connect(on_rejected)
    variant_reviewed.connect(on_reviewed)
    yield calls
    variant_approved.disconnect(on_approved)
    variant_rejected.disconnect(on_rejected)
    variant_reviewed.disconnect(on_reviewed)


def test_signals_fire_once_after_commit_with_the_decision(
    shop, editor, received, django_capture_on_commit_callbacks
):
    (variant,) = copy_variants(shop)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        row = review.approve(variant, editor, expected_version=1)
    assert received == []  # nothing before the commit
    for callback in callbacks:
        callback()
    assert [name for name, _ in received] == ["approved", "reviewed"]
    for _name, kwargs in received:
        assert kwargs["sender"] is Variant and kwargs["reviewer"] == editor
        assert kwargs["review"] == row and kwargs["variant"].status == "approved"
    received.clear()
    with django_capture_on_commit_callbacks(execute=True):
        with pytest.raises(review.ReviewConflict):
            review.reject(variant, editor, expected_version=1)
    assert received == []  # no signal for a decision that was not made
    with django_capture_on_commit_callbacks(execute=True):
        review.archive(variant, editor)
    assert [(n, k["review"].action) for n, k in received] == [("reviewed", "archive")]
    received.clear()
    (other,) = copy_variants(shop)
    with django_capture_on_commit_callbacks(execute=True):
        review.reject(other, editor, note="No")
    assert [(n, k["variant"].pk, k["review"].note) for n, k in received] == [
        ("rejected", other.pk, "No"),
        ("reviewed", other.pk, "No"),
    ]


def test_a_failing_receiver_does_not_undo_the_decision(
    shop, editor, django_capture_on_commit_callbacks, caplog
):
    def broken(sender, **kwargs):
        raise RuntimeError("receiver bug")

    (variant,) = copy_variants(shop)
    variant_approved.connect(broken)
    try:
        with django_capture_on_commit_callbacks(execute=True):
            review.approve(variant, editor)
    finally:
        variant_approved.disconnect(broken)
    variant.refresh_from_db()
    assert variant.status == "approved"
    assert "moderation signal failed" in caplog.text


# Auto-approval --------------------------------------------------------------------------------


def test_auto_approval_off_by_default_leaves_everything_pending(shop):
    variants = copy_variants(shop, 3)
    assert {v.status for v in variants} == {"pending"}
    assert not Review.objects.exists()


def test_auto_approval_safe_approves_only_unflagged_variants(
    shop, aigc, received, django_capture_on_commit_callbacks
):
    aigc(MODERATION={"AUTO_APPROVE": "safe"}, BRAND={"BANNED_WORDS": ["shop"]})
    with django_capture_on_commit_callbacks(execute=True):
        variants = copy_variants(shop, 6)
    flagged = [v for v in variants if not v.safety["ok"]]
    safe = [v for v in variants if v.safety["ok"]]
    assert flagged and safe  # the dummy's "Shop now" is flagged, its other CTAs are not
    for variant in flagged:
        variant.refresh_from_db()
        assert variant.status == "pending" and not variant.reviews.exists()
    for variant in safe:
        variant.refresh_from_db()
        assert variant.status == "approved"
        (row,) = variant.reviews.all()
        assert (row.reviewer, row.action, row.status_before, row.status_after) == (
            None,
            "auto_approve",
            "pending",
            "approved",
        )
        assert row.note == "Approved by the auto-approval policy safe."
    approved = sorted(k["variant"].pk for name, k in received if name == "approved")
    assert approved == sorted(v.pk for v in safe)
    assert all(k["reviewer"] is None for _, k in received)


def approve_headlines_with_trail(variant: Variant) -> bool:
    return "Trail" in variant.copy.get("headline", "")


def test_auto_approval_by_a_dotted_path(shop, aigc):
    aigc(MODERATION={"AUTO_APPROVE": "tests.test_moderation.approve_headlines_with_trail"})
    for variant in copy_variants(shop, 4):
        variant.refresh_from_db()
        expected = "approved" if "Trail" in variant.copy["headline"] else "pending"
        assert variant.status == expected


def test_a_broken_auto_approval_policy_leaves_variants_pending(shop, aigc):
    aigc(MODERATION={"AUTO_APPROVE": "tests.test_moderation.no_such_function"})
    variants = copy_variants(shop, 2)
    assert [v.status for v in variants] == ["pending", "pending"]


def test_edited_variants_are_never_auto_approved(
    shop, aigc, editor, django_capture_on_commit_callbacks
):
    aigc(MODERATION={"AUTO_APPROVE": "safe"})
    (variant,) = copy_variants(shop)
    variant.refresh_from_db()
    with django_capture_on_commit_callbacks(execute=True):
        review.edit_copy(variant, editor, {"headline": "Plain words"}, variant.version)
    variant.refresh_from_db()
    assert variant.safety["ok"] and variant.status == "pending" and variant.edited


# Check E019 ------------------------------------------------------------------------------------

NOT_CALLABLE = 42


@pytest.mark.parametrize(
    ("policy", "problem"),
    [
        (42, "is neither None, 'safe' nor a dotted path"),
        ("unsafe", "cannot be imported"),
        ("tests.test_moderation.nothing_here", "cannot be imported"),
        ("tests.test_moderation.NOT_CALLABLE", "does not name a callable"),
    ],
)
def test_e019_bad_auto_approve(policy, problem):
    with override_settings(AIGC={**test_settings.AIGC, "MODERATION": {"AUTO_APPROVE": policy}}):
        (message,) = check_moderation()
    assert message.id == "aigc_django.E019"
    assert problem in message.msg


@pytest.mark.parametrize(
    "policy", [None, "safe", "tests.test_moderation.approve_headlines_with_trail", bool]
)
def test_e019_good_auto_approve(policy):
    with override_settings(AIGC={**test_settings.AIGC, "MODERATION": {"AUTO_APPROVE": policy}}):
        assert check_moderation() == []


def test_renditions_come_in_the_slots_order_of_sizes():
    # PostgreSQL's jsonb keeps keys in its own order; every reader goes by the slot's sizes.
    slot = Slot.objects.create(
        key="strip", name="Strip", sizes=[[728, 90], [1200, 628], [300, 250]]
    )
    segment = Segment.objects.create(key="runners", name="Runners")
    entry = {"width": 1, "height": 1, "files": []}
    variant = Variant.objects.create(
        slot=slot,
        segment=segment,
        copy={"headline": "Hi"},
        renditions={"300x250": entry, "1200x628": entry, "640x640": entry, "728x90": entry},
    )
    variant.refresh_from_db()
    labels = [label for label, _ in variant.renditions_in_order()]
    assert labels == ["728x90", "1200x628", "300x250", "640x640"]
