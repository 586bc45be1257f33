"""The delivery stage: template tags, selection (fallback chain, stickiness, Thompson
sampling), the cache and its query counts, staff preview, escaping, client mode and the
slots API, and impressions."""

from __future__ import annotations

import json
import random
import re
import uuid
from typing import Any

import pytest
from django.contrib.auth.models import AnonymousUser, Permission, User
from django.core.cache import cache
from django.http import HttpResponse, QueryDict
from django.template import Context, Template
from django.test import RequestFactory

from aigc_django.delivery import cache as delivery_cache
from aigc_django.delivery import clicks, counters, selection
from aigc_django.models import Profile, Segment, Slot, Variant, Visitor
from aigc_django.moderation import review
from aigc_django.profiles.build import ensure_everyone
from aigc_django.tracking.visitors import set_visitor_cookie

pytestmark = pytest.mark.django_db

APPROVED = Variant.Status.APPROVED
PENDING = Variant.Status.PENDING
COMMENT = re.compile(r"<!-- aigc: (.*?) -->", re.S)


@pytest.fixture(autouse=True)
def empty_cache():
    cache.clear()
    delivery_cache.forget_local()
    yield
    cache.clear()
    delivery_cache.forget_local()


@pytest.fixture
def segments() -> dict[str, Segment]:
    return {
        "everyone": ensure_everyone(),
        "runners": Segment.objects.create(key="runners", name="Runners"),
        "cooks": Segment.objects.create(key="cooks", name="Cooks"),
    }


@pytest.fixture
def slots() -> dict[str, Slot]:
    return {
        "hero": Slot.objects.create(
            key="home-hero",
            name="Home hero",
            sizes=[[600, 200], [300, 250]],
            copy_fields={"headline": 50, "body": 120, "cta": 20},
            link="/sale/",
            fallback={"headline": "Fallback hello", "image": "/static/fallback.png"},
        ),
        "strip": Slot.objects.create(
            key="category-strip", name="Strip", sizes=[[600, 200]], link="/strip/"
        ),
        "nudge": Slot.objects.create(
            key="cart-nudge",
            name="Nudge",
            kind=Slot.Kind.COPY,
            copy_fields={"headline": 60, "body": 140},
            link="/cart/",
        ),
    }


def renditions(tag: str, sizes: list[tuple[int, int]] | None = None) -> dict[str, dict]:
    found = {}
    for width, height in sizes or [(600, 200), (300, 250)]:
        label = f"{width}x{height}"
        files = []
        for w in (width, width // 2):
            h = round(height * w / width)
            for fmt, ext in (("WEBP", "webp"), ("JPEG", "jpg")):
                name = f"aigc/variants/{tag}/{label}/{w}w.{ext}"
                files.append({"name": name, "width": w, "height": h, "format": fmt})
        found[label] = {"width": width, "height": height, "files": files, "layout": {}}
    return found


def make_variant(
    slot: Slot, segment: Segment, headline: str, status: str = APPROVED, **fields: Any
) -> Variant:
    values = {
        "copy": {"headline": headline, "body": f"{headline} body", "cta": "Shop"},
        "alt_text": f"Banner: {headline}",
        "renditions": renditions(headline.replace(" ", "-").lower())
        if slot.kind == Slot.Kind.BANNER
        else {},
        **fields,
    }
    return Variant.objects.create(slot=slot, segment=segment, status=status, **values)


def visitor_in(segment: Segment | None) -> uuid.UUID:
    visitor = Visitor.objects.create()
    Profile.objects.create(visitor=visitor, segment=segment)
    return visitor.pk


def make_request(
    visitor_id: uuid.UUID | None = None, *, tracking: bool = True, user: Any = None, **params: str
):
    request = RequestFactory().get("/page/", params)
    request.aigc_tracking = tracking and visitor_id is not None
    request.aigc_visitor_id = visitor_id if tracking else None
    request.user = user or AnonymousUser()
    return request


def render(source: str, request: Any = None, **context: Any) -> str:
    return Template("{% load aigc %}" + source).render(Context({"request": request, **context}))


def shown_variant(html: str) -> int | None:
    found = re.search(r'data-aigc-variant="(\d+)"', html)
    return int(found.group(1)) if found else None


def pending_impressions(variant: Variant) -> int:
    return counters.pending_counts([variant.pk])[variant.pk][0]


PAGE = """
<main>{% aigc_banner "home-hero" %}<div>{% aigc_banner "category-strip" size="600x200" %}</div>
<p>{% aigc_copy "cart-nudge" "headline" %} {% aigc_copy "cart-nudge" "body" %}</p></main>
"""


# Query counts ---------------------------------------------------------------------------------


def test_a_page_with_three_slots_makes_two_queries_cold_and_none_warm(
    segments, slots, django_assert_num_queries, django_assert_max_num_queries
):
    for key in ("hero", "strip", "nudge"):
        make_variant(slots[key], segments["runners"], f"{key} for runners")
        make_variant(slots[key], segments["everyone"], f"{key} for everyone")
    runner = visitor_in(segments["runners"])
    other = visitor_in(segments["cooks"])

    with django_assert_max_num_queries(2):  # the visitor's segment, every slot's variants
        cold = render(PAGE, make_request(runner))
    assert cold.count("data-aigc-variant") == 2
    assert "nudge for runners" in cold
    with django_assert_num_queries(0):
        warm = render(PAGE, make_request(runner))
    assert warm == cold  # sticky: the same banners again
    # Another visitor: only their segment is looked up; the slots are cached already.
    with django_assert_num_queries(1):
        render(PAGE, make_request(other))
    with django_assert_num_queries(0):
        page = render(PAGE, make_request(other))
    assert "for everyone" in page and "for runners" not in page
    # A visitor who is not tracked (a bot, no consent) needs no lookup at all.
    with django_assert_num_queries(0):
        render(PAGE, make_request(None, tracking=False))


def test_the_cache_is_filled_for_every_slot_at_once(segments, slots, django_assert_num_queries):
    make_variant(slots["hero"], segments["everyone"], "hero")
    with django_assert_num_queries(1):
        render('{% aigc_banner "home-hero" %}', make_request(None))
    with django_assert_num_queries(0):
        render('{% aigc_banner "category-strip" %}{% aigc_banner "nope" %}', make_request(None))
    with django_assert_num_queries(0):  # an unknown slot is remembered as unknown
        render('{% aigc_banner "nope" %}', make_request(None))


# Fallback chain ---------------------------------------------------------------------------


def test_fallback_chain_segment_then_everyone_then_fallback_content_then_nothing(
    segments, slots, settings, django_capture_on_commit_callbacks
):
    settings.DEBUG = True
    own = make_variant(slots["hero"], segments["runners"], "Runner hero")
    shared = make_variant(slots["hero"], segments["everyone"], "Everyone hero")
    runner = visitor_in(segments["runners"])
    editor = User.objects.create_user("editor")

    def page() -> str:
        return render('{% aigc_banner "home-hero" %}', make_request(runner))

    html = page()
    assert shown_variant(html) == own.pk and not COMMENT.search(html)

    with django_capture_on_commit_callbacks(execute=True):
        review.reject(own, editor)
    html = page()
    assert shown_variant(html) == shared.pk
    assert COMMENT.search(html).group(1) == (
        "no approved variant of 'home-hero' for segment 'runners'; using everyone's"
    )

    with django_capture_on_commit_callbacks(execute=True):
        review.reject(shared, editor)
    html = page()
    assert shown_variant(html) is None
    assert 'class="aigc-banner aigc-fallback"' in html and "Fallback hello" in html
    assert '<img src="/static/fallback.png" width="600" height="200"' in html
    assert 'href="/sale/"' in html
    assert "showing the fallback content" in COMMENT.search(html).group(1)

    slots["hero"].fallback = {}
    slots["hero"].save()  # a slot change bumps the cache too
    html = page()
    assert html == (
        "<!-- aigc: no approved variant of 'home-hero' for segment 'runners' or everyone, "
        "and the slot has no fallback content -->"
    )

    settings.DEBUG = False
    assert page() == ""
    assert render('{% aigc_banner "no-such-slot" %}', make_request(runner)) == ""
    settings.DEBUG = True
    assert render('{% aigc_banner "no-such-slot" %}', make_request(runner)) == (
        "<!-- aigc: there is no slot 'no-such-slot' -->"
    )


def test_copy_falls_back_field_by_field_and_an_inactive_slot_shows_its_fallback(
    segments, slots, settings
):
    settings.DEBUG = True
    slots["nudge"].fallback = {"headline": "Free shipping"}
    slots["nudge"].save()
    html = render('{% aigc_copy "cart-nudge" "headline" %}|{% aigc_copy "cart-nudge" "body" %}')
    headline, body = html.split("|")
    assert headline.endswith("Free shipping") and "fallback" in headline
    assert "has no 'body'" in body and "Free shipping" not in body

    make_variant(slots["nudge"], segments["everyone"], "Pair it with socks")
    slots["nudge"].active = False
    slots["nudge"].save()
    assert "Free shipping" in render('{% aigc_copy "cart-nudge" "headline" %}')
    assert "not active" in render('{% aigc_copy "cart-nudge" "headline" %}')


# Errors never reach the page ----------------------------------------------------------------


BROKEN_TAGS = [
    "{% aigc_banner %}",
    '{% aigc_banner "home-hero" "extra" %}',
    '{% aigc_banner "home-hero" size="big" %}',
    '{% aigc_banner "home-hero" size="10x" %}',
    '{% aigc_banner "home-hero" loading="soon" %}',
    '{% aigc_banner "home-hero" colour="red" %}',
    '{% aigc_banner "home-hero"|no_such_filter %}',
    "{% aigc_banner 42 %}",
    "{% aigc_banner missing_variable %}",
    '{% aigc_copy "cart-nudge" %}',
    '{% aigc_copy "cart-nudge" 7 %}',
    '{% aigc_slot "home-hero" %}',
    '{% aigc_slot "home-hero" as %}',
    "{% aigc_tracking_script 1 %}",
]


@pytest.mark.parametrize("source", BROKEN_TAGS)
def test_bad_arguments_never_raise(source, segments, slots, settings, caplog):
    make_variant(slots["hero"], segments["everyone"], "Hero")
    settings.DEBUG = False
    assert render(source + "<p>rest of the page</p>") == "<p>rest of the page</p>"
    settings.DEBUG = True
    html = render(source)
    assert html.startswith("<!-- aigc: ") and html.endswith(" -->")
    assert any(r.name == "aigc_django.delivery" for r in caplog.records)


def test_broken_cache_values_and_renditions_never_raise(segments, slots, settings, caplog):
    settings.DEBUG = True
    variant = make_variant(slots["hero"], segments["everyone"], "Hero", renditions={})
    html = render('{% aigc_banner "home-hero" %}')
    # No banner image: the fallback content instead, and the comment says why.
    assert "Fallback hello" in html and f"variant #{variant.pk} has no banner image" in html
    html = render('{% aigc_banner "home-hero" size="728x90" %}{% aigc_copy "home-hero" "cta" %}')
    assert "Shop" in html  # the copy still shows

    Variant.objects.filter(pk=variant.pk).update(
        renditions={"600x200": {"width": "wide", "files": [{"name": "x.webp"}]}, "bad": 3}
    )
    delivery_cache.bump_version()
    assert "has no banner image" in render('{% aigc_banner "home-hero" %}')

    version = delivery_cache.version()
    for key in delivery_cache.entry_keys(version, "home-hero", "everyone"):
        cache.set(key, {"slot": "not a dict", "variants": 5})
    delivery_cache.forget_local()
    settings.DEBUG = False
    assert render('<p>{% aigc_banner "home-hero" %}{% aigc_copy "home-hero" "body" %}</p>') == (
        "<p></p>"
    )
    assert "{% aigc_banner %} failed" in caplog.text
    settings.DEBUG = True
    assert "aigc_banner failed: TypeError" in render('{% aigc_banner "home-hero" %}')


def test_tags_never_run_a_model_or_write_to_the_database(
    segments, slots, django_assert_num_queries, monkeypatch
):
    from aigc_django.generation import backends

    def refuse(*args, **kwargs):
        raise AssertionError("a tag loaded a generation backend")

    monkeypatch.setattr(backends, "get_copy_backend", refuse, raising=False)
    monkeypatch.setattr(backends, "get_image_backend", refuse, raising=False)
    make_variant(slots["hero"], segments["everyone"], "Hero")
    runner = visitor_in(segments["runners"])
    render(PAGE, make_request(runner))
    with django_assert_num_queries(0):
        render(PAGE, make_request(runner))
    assert Variant.objects.get(slot=slots["hero"]).impressions == 0  # counted in the cache


# Stickiness, approvals, Thompson sampling ----------------------------------------------------


def test_a_visitor_keeps_their_variant_until_it_is_rejected(
    segments, slots, django_capture_on_commit_callbacks
):
    variants = [make_variant(slots["hero"], segments["runners"], f"Hero {i}") for i in range(4)]
    runner = visitor_in(segments["runners"])
    seen = {shown_variant(render('{% aigc_banner "home-hero" %}', make_request(runner)))}
    for _ in range(30):
        seen.add(shown_variant(render('{% aigc_banner "home-hero" %}', make_request(runner))))
    assert len(seen) == 1
    (first,) = seen

    # Different visitors do not all get the same one (the draw is per visitor).
    others = {
        shown_variant(
            render('{% aigc_banner "home-hero" %}', make_request(visitor_in(segments["runners"])))
        )
        for _ in range(30)
    }
    assert len(others) > 1

    with django_capture_on_commit_callbacks(execute=True):
        review.reject(Variant.objects.get(pk=first), User.objects.create_user("ed"))
    after = {
        shown_variant(render('{% aigc_banner "home-hero" %}', make_request(runner)))
        for _ in range(10)
    }
    assert len(after) == 1 and first not in after
    assert after <= {v.pk for v in variants}


def test_sticky_seconds_is_configurable(segments, slots, aigc):
    aigc(DELIVERY={"STICKY_SECONDS": 0})  # no stickiness: a fresh draw on every page
    for i in range(4):
        make_variant(slots["hero"], segments["runners"], f"Hero {i}")
    runner = visitor_in(segments["runners"])
    seen = {
        shown_variant(render('{% aigc_banner "home-hero" %}', make_request(runner)))
        for _ in range(30)
    }
    assert len(seen) > 1


def test_visitors_who_are_not_tracked_get_everyones_content_without_stickiness(segments, slots):
    make_variant(slots["hero"], segments["runners"], "Runner hero")
    shared = make_variant(slots["hero"], segments["everyone"], "Everyone hero")
    runner = visitor_in(segments["runners"])
    request = make_request(runner, tracking=False)
    assert shown_variant(render('{% aigc_banner "home-hero" %}', request)) == shared.pk
    assert cache.get(selection.sticky_key(runner)) is None
    assert cache.get(selection.sticky_key(None)) is None
    assert pending_impressions(shared) == 0


def test_a_newly_approved_variant_appears_without_clearing_the_cache(
    segments, slots, django_capture_on_commit_callbacks
):
    runner = visitor_in(segments["runners"])
    assert "Fallback hello" in render('{% aigc_banner "home-hero" %}', make_request(runner))
    fresh = make_variant(slots["hero"], segments["runners"], "Fresh", status=PENDING)
    assert "Fallback hello" in render('{% aigc_banner "home-hero" %}', make_request(runner))
    with django_capture_on_commit_callbacks(execute=True):
        review.approve(fresh, User.objects.create_user("ed"))
    html = render('{% aigc_banner "home-hero" %}', make_request(runner))
    assert shown_variant(html) == fresh.pk


def test_thompson_sampling_prefers_the_variant_with_a_much_higher_click_through(segments, slots):
    good = make_variant(slots["hero"], segments["everyone"], "Good", impressions=2000, clicks=200)
    poor = make_variant(slots["hero"], segments["everyone"], "Poor", impressions=2000, clicks=40)
    rng = random.Random(7)

    def picks(count: int) -> list[int]:
        return [
            selection.choose(make_request(None, tracking=False), "home-hero", rng).variant["id"]
            for _ in range(count)
        ]

    first = picks(400)
    assert first.count(good.pk) > 0.95 * len(first)  # 10 % against 2 %: P(poor wins) ~ 0
    # A new variant with no data has a wide posterior: it is still shown (exploration).
    fresh = make_variant(slots["hero"], segments["everyone"], "Fresh")
    delivery_cache.bump_version()
    second = picks(400)
    assert second.count(fresh.pk) > 0.5 * len(second)
    assert second.count(poor.pk) < 0.02 * len(second)


def test_thompson_sampling_sees_counts_not_flushed_yet(segments, slots):
    first = make_variant(slots["hero"], segments["everyone"], "First", impressions=1000, clicks=50)
    second = make_variant(
        slots["hero"], segments["everyone"], "Second", impressions=1000, clicks=50
    )
    counters.record_impressions([second.pk] * 1000)
    for _ in range(300):
        counters.record_click(second.pk)
    rng = random.Random(3)
    picks = [
        selection.choose(make_request(None, tracking=False), "home-hero", rng).variant["id"]
        for _ in range(200)
    ]
    assert picks.count(second.pk) > 0.95 * len(picks)
    assert picks.count(first.pk) < 0.05 * len(picks)


# Staff preview --------------------------------------------------------------------------


def staff(username: str, *, perm: bool = True) -> User:
    user = User.objects.create_user(username, is_staff=True)
    if perm:
        user.user_permissions.add(Permission.objects.get(codename="view_variant"))
    return User.objects.get(pk=user.pk)  # fresh permission cache


def test_staff_preview_any_variant_on_the_real_page_without_counting(segments, slots):
    live = make_variant(slots["hero"], segments["everyone"], "Live")
    draft = make_variant(slots["hero"], segments["runners"], "Draft <b>", status=PENDING)
    runner = visitor_in(segments["runners"])
    page = '{% aigc_banner "home-hero" %}{% aigc_copy "home-hero" "headline" %}'

    html = render(page, make_request(runner, user=staff("boss"), aigc_preview=str(draft.pk)))
    assert shown_variant(html) == draft.pk
    assert "aigc-preview" in html and f"Preview: variant #{draft.pk} (pending)" in html
    assert "Draft &lt;b&gt;" in html and "Draft <b>" not in html
    assert 'href="/sale/"' in html  # no signed click link: staff clicks count nothing
    assert pending_impressions(draft) == 0 and pending_impressions(live) == 0
    assert cache.get(selection.sticky_key(runner)) is None

    # Without the permission, or not staff, or a bad id: the normal page.
    for user, value in [
        (staff("nope", perm=False), str(draft.pk)),
        (User.objects.create_user("visitor"), str(draft.pk)),
        (staff("typo"), "abc"),
    ]:
        html = render(page, make_request(runner, user=user, aigc_preview=value))
        assert shown_variant(html) == live.pk and "aigc-preview" not in html


def test_preview_parameter_is_configurable(segments, slots, aigc):
    aigc(DELIVERY={"PREVIEW_PARAMETER": "look"})
    make_variant(slots["hero"], segments["everyone"], "Live")
    draft = make_variant(slots["hero"], segments["everyone"], "Draft", status=PENDING)
    request = make_request(None, user=staff("boss"), look=str(draft.pk))
    assert shown_variant(render('{% aigc_banner "home-hero" %}', request)) == draft.pk


def test_preview_read_only_from_a_query_string_or_a_set_get(segments, slots):
    live = make_variant(slots["hero"], segments["everyone"], "Live")
    draft = make_variant(slots["hero"], segments["everyone"], "Draft", status=PENDING)
    boss = staff("boss")
    # No query string: the page never builds request.GET (a QueryDict per page otherwise).
    request = make_request(None, user=boss)
    assert shown_variant(render('{% aigc_banner "home-hero" %}', request)) == live.pk
    assert "GET" not in vars(request)
    # A GET set by code (no query string in META) is still read.
    request = make_request(None, user=boss)
    request.GET = QueryDict(f"aigc_preview={draft.pk}")
    assert shown_variant(render('{% aigc_banner "home-hero" %}', request)) == draft.pk


# Markup and escaping ----------------------------------------------------------------------


def test_banner_markup(segments, slots, settings):
    settings.MEDIA_URL = "/media/"
    variant = make_variant(slots["hero"], segments["everyone"], "Hero")
    html = render(
        '{% aigc_banner "home-hero" size="300x250" loading="eager" class="wide" img_class="b" %}',
        make_request(visitor_in(None)),
    )
    link = clicks.click_url(variant.pk, "home-hero", "/sale/")
    base = "/media/aigc/variants/hero/300x250"
    assert html == (
        f'<a href="{link}" class="aigc-banner wide" data-aigc-slot="home-hero" '
        f'data-aigc-variant="{variant.pk}"><picture>'
        f'<source type="image/webp" srcset="{base}/150w.webp 150w, {base}/300w.webp 300w" '
        'sizes="(max-width: 300px) 100vw, 300px">'
        f'<img src="{base}/300w.jpg" srcset="{base}/150w.jpg 150w, {base}/300w.jpg 300w" '
        'sizes="(max-width: 300px) 100vw, 300px" width="300" height="250" '
        'alt="Banner: Hero" loading="eager" decoding="async" class="b"></picture></a>'
    )
    # The first size by default, and link= instead of the slot's link.
    html = render('{% aigc_banner "home-hero" link="/other/" %}', make_request(None))
    assert 'width="600" height="200"' in html and 'loading="lazy"' in html
    assert clicks.click_url(variant.pk, "home-hero", "/other/") in html


def test_unsafe_links_are_dropped_not_rendered(segments, slots, settings):
    variant = make_variant(slots["hero"], segments["everyone"], "Hero")
    html = render('{% aigc_banner "home-hero" link="javascript:alert(1)" %}', make_request(None))
    assert shown_variant(html) == variant.pk
    assert "javascript" not in html and html.startswith("<div ")
    Slot.objects.filter(pk=slots["hero"].pk).update(
        fallback={"headline": "Hi", "link": "javascript:alert(1)", "image": "data:x"}
    )
    Variant.objects.all().delete()
    delivery_cache.bump_version()
    html = render('{% aigc_banner "home-hero" %}', make_request(None))
    assert "javascript" not in html and "data:" not in html and 'href="/sale/"' in html


def test_generated_copy_is_escaped_everywhere(segments, slots):
    evil = "<script>alert('x')</script>"
    make_variant(slots["hero"], segments["everyone"], evil, alt_text=f'"{evil}')
    source = (
        '{% aigc_banner "home-hero" %}|{% aigc_copy "home-hero" "headline" %}|'
        '{% aigc_slot "home-hero" as v %}{{ v.headline }}|{{ v.copy.body }}|{{ v.picture.html }}'
    )
    html = render(source, make_request(None))
    assert "<script>" not in html
    assert html.count("&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;") == 5
    assert 'alt="&quot;&lt;script&gt;' in html


def test_aigc_slot_for_custom_markup(segments, slots, settings):
    variant = make_variant(slots["hero"], segments["everyone"], "Hero")
    html = render(
        '{% aigc_slot "home-hero" size="300x250" as v %}<h2 data-id="{{ v.id }}">{{ v.headline }}'
        '</h2><img src="{{ v.picture.src }}" width="{{ v.picture.width }}">'
        '<a href="{{ v.link }}">{{ v.cta }}</a>{{ v.is_fallback }}',
        make_request(None),
    )
    link = clicks.click_url(variant.pk, "home-hero", "/sale/")
    assert html == (
        f'<h2 data-id="{variant.pk}">Hero</h2>'
        f'<img src="{settings.MEDIA_URL}aigc/variants/hero/300x250/300w.jpg" width="300">'
        f'<a href="{link}">Shop</a>False'
    )
    fallback = render(
        '{% aigc_slot "category-strip" as v %}{% if v %}shown{% else %}none{% endif %}',
        make_request(None),
    )
    assert fallback == "none"
    Variant.objects.all().delete()
    delivery_cache.bump_version()
    html = render(
        '{% aigc_slot "home-hero" as v %}{{ v.is_fallback }} {{ v.id }} {{ v.headline }} '
        "{{ v.picture.src }} {{ v.link }}",
        make_request(None),
    )
    assert html == "True None Fallback hello /static/fallback.png /sale/"


def test_templates_without_a_request_still_render_one_variant_per_slot(segments, slots):
    for i in range(5):
        make_variant(slots["nudge"], segments["everyone"], f"Headline {i}")
    for _ in range(10):
        html = Template(
            '{% load aigc %}{% aigc_copy "cart-nudge" "headline" %}|'
            '{% aigc_copy "cart-nudge" "body" %}'
        ).render(Context({}))
        headline, body = html.split("|")
        assert body == f"{headline} body"


# Impressions --------------------------------------------------------------------------------


def test_impressions_are_counted_once_per_request_per_variant(segments, slots):
    hero = make_variant(slots["hero"], segments["everyone"], "Hero")
    nudge = make_variant(slots["nudge"], segments["everyone"], "Nudge")
    visitor = visitor_in(None)
    page = (
        '{% aigc_banner "home-hero" %}{% aigc_copy "home-hero" "headline" %}'
        '{% aigc_slot "home-hero" as v %}{% aigc_copy "cart-nudge" "headline" %}'
        '{% aigc_copy "cart-nudge" "body" %}'
    )
    render(page, make_request(visitor))
    assert (pending_impressions(hero), pending_impressions(nudge)) == (1, 1)
    render(page, make_request(visitor))
    assert (pending_impressions(hero), pending_impressions(nudge)) == (2, 2)
    # Fallback content and visitors who are not tracked count nothing.
    render(page, make_request(visitor, tracking=False))
    render('{% aigc_banner "category-strip" %}', make_request(visitor))
    assert (pending_impressions(hero), pending_impressions(nudge)) == (2, 2)


# Client mode and the API --------------------------------------------------------------------


def test_client_mode_renders_placeholders_without_queries_or_impressions(
    segments, slots, aigc, django_assert_num_queries
):
    aigc(DELIVERY={"CLIENT_MODE": True})
    hero = make_variant(slots["hero"], segments["everyone"], "Hero")
    request = make_request(visitor_in(None))
    with django_assert_num_queries(0):
        html = render(
            '{% aigc_banner "home-hero" size="600x200" %}{% aigc_copy "cart-nudge" "body" %}',
            request,
        )
    assert html == (
        '<div class="aigc-slot" data-aigc-slot="home-hero" data-aigc-size="600x200" '
        'style="aspect-ratio: 600 / 200"></div>'
        '<span class="aigc-slot" data-aigc-slot="cart-nudge" data-aigc-field="body"></span>'
    )
    assert pending_impressions(hero) == 0
    # client=False on a tag renders on the server all the same.
    assert shown_variant(render('{% aigc_banner "home-hero" client=False %}')) == hero.pk


def test_tracking_script_tag(aigc):
    html = render("{% aigc_tracking_script %}")
    config = json.loads(re.search(r'id="aigc-config" type="application/json">(.*?)<', html)[1])
    assert config == {
        "endpoint": "/aigc/api/slots/",
        "feedback": "/aigc/api/feedback/",
        "client_mode": False,
    }
    assert "<script src=" in html
    aigc(DELIVERY={"CLIENT_MODE": True})
    html = render("{% aigc_tracking_script %}")
    assert '"client_mode": true' in html


def test_slots_api_json(segments, slots, browser):
    runners_hero = make_variant(slots["hero"], segments["runners"], "Runner hero")
    make_variant(slots["hero"], segments["everyone"], "Everyone hero")
    response = browser.get("/aigc/api/slots/home-hero/?size=300x250")
    assert response.status_code == 200
    assert response["Cache-Control"] == "private, no-store"
    assert "Cookie" in response["Vary"]
    data = response.json()
    assert data["slot"] == "home-hero" and data["kind"] == "banner"
    assert data["segment"] == "everyone" and data["is_fallback"] is False
    assert data["copy"] == {
        "headline": "Everyone hero",
        "body": "Everyone hero body",
        "cta": "Shop",
    }
    assert data["picture"]["width"] == 300 and data["picture"]["src"].endswith("300w.jpg")
    assert data["picture"]["sources"][0]["type"] == "image/webp"
    assert data["link"] == clicks.click_url(data["variant"], "home-hero", "/sale/")
    assert pending_impressions(Variant.objects.get(pk=data["variant"])) == 0

    # A visitor the cookie names, in their segment, keeps their variant.
    signed = HttpResponse()
    set_visitor_cookie(signed, visitor_in(segments["runners"]))
    browser.cookies["aigc_vid"] = signed.cookies["aigc_vid"].value
    data = browser.get("/aigc/api/slots/home-hero/").json()
    assert (data["variant"], data["segment"]) == (runners_hero.pk, "runners")
    assert browser.get("/aigc/api/slots/home-hero/").json()["variant"] == runners_hero.pk


def test_slots_api_html_fallback_errors(segments, slots, browser):
    make_variant(slots["nudge"], segments["everyone"], "Socks <3")
    response = browser.get("/aigc/api/slots/cart-nudge/?format=html&field=headline")
    assert response["Content-Type"].startswith("text/html")
    assert response["Cache-Control"] == "private, no-store"
    assert response.content.decode() == "Socks &lt;3"
    html = browser.get("/aigc/api/slots/cart-nudge/?format=html").content.decode()
    assert '<span class="aigc-headline" data-aigc-field="headline">Socks &lt;3</span>' in html

    html = browser.get("/aigc/api/slots/home-hero/?format=html").content.decode()
    assert "aigc-fallback" in html and "Fallback hello" in html
    data = browser.get("/aigc/api/slots/home-hero/").json()
    assert data["variant"] is None and data["is_fallback"] is True
    assert data["copy"] == {"headline": "Fallback hello"}
    assert data["picture"]["src"] == "/static/fallback.png" and data["link"] == "/sale/"

    data = browser.get("/aigc/api/slots/category-strip/").json()
    assert data["variant"] is None and data["copy"] == {} and data["picture"] is None

    response = browser.get("/aigc/api/slots/no-such-slot/")
    assert response.status_code == 404
    assert response.json() == {"error": "There is no slot 'no-such-slot'."}
    assert response["Cache-Control"] == "private, no-store"
    assert browser.get("/aigc/api/slots/home-hero/?size=huge").status_code == 400
    assert browser.post("/aigc/api/slots/home-hero/").status_code == 405
