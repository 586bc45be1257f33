"""The example storefront works as its README says: a fresh database, a catalog, simulated
shoppers, segments on the segments page, and tracked pages."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "example_project"

pytestmark = pytest.mark.slow


def manage(data_dir: Path, *args: str) -> str:
    env = {
        **os.environ,
        "STOREFRONT_DATA_DIR": str(data_dir),
        "DJANGO_SETTINGS_MODULE": "storefront.settings",
        "PYTHONPATH": str(ROOT),
    }
    result = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=EXAMPLE,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_catalog_simulated_traffic_and_segments(tmp_path):
    manage(tmp_path, "migrate", "-v", "0")
    assert "Catalog ready" in manage(tmp_path, "seed_catalog", "--products", "24")
    out = manage(tmp_path, "simulate_traffic", "--visitors", "300", "--personas", "3")
    assert "learned segments" in out
    assert "adjusted Rand index" in out
    assert (tmp_path / "aigc-models" / "factorization" / "v1" / "config.json").exists()
    check = manage(
        tmp_path,
        "shell",
        "-c",
        "from django.test import Client; "
        "c = Client(SERVER_NAME='localhost', headers={'User-Agent': 'Mozilla/5.0'}); "
        "r = c.get('/'); print(r.status_code, 'aigc_vid' in r.cookies);"
        "r = c.get('/segments/'); print(r.status_code, r.content.count(b'class=\"segment'))",
    )
    home_line, segments_line = check.strip().splitlines()[-2:]
    status, articles = segments_line.split()
    assert status == "200" and int(articles) >= 4  # 3 learned segments + everyone
    assert home_line == "200 True"


def test_prepare_demo_runs_every_stage_and_shows_the_variants(tmp_path):
    manage(tmp_path, "migrate", "-v", "0")
    out = manage(tmp_path, "prepare_demo", "--visitors", "300", "--epochs", "2")
    # The last step makes the variants (the steps before it train the models).
    assert re.search(r"(\d+)/\1 variants", out) and "pending variants" in out
    assert list((tmp_path / "aigc-models" / "gan").glob("v1/model.safetensors"))
    assert list((tmp_path / "aigc-models" / "copy").glob("v1/model.safetensors"))
    check = manage(
        tmp_path,
        "shell",
        "-c",
        "from django.test import Client; from aigc_django.models import Variant, Slot;"
        "c = Client(SERVER_NAME='localhost', headers={'User-Agent': 'Mozilla/5.0'}); "
        "r = c.get('/generated/'); "
        "wanted = sum(s.variants_per_segment for s in Slot.objects.all());"
        "print(r.status_code, r.content.count(b'class=\"variant\"'), Variant.objects.count(),"
        " Variant.objects.exclude(image='').count(), wanted)",
    )
    status, shown, stored, with_image, wanted_per_segment = check.strip().splitlines()[-1].split()
    assert status == "200"
    assert int(stored) >= int(wanted_per_segment) * 2  # at least everyone + one learned segment
    assert int(shown) == int(stored)
    assert int(with_image) > 0
    again = manage(tmp_path, "aigc_generate", "--no-progress")
    assert "nothing to do" in again
    count = (
        "from aigc_django.models import Event, ModelArtifact, Review, Variant;"
        "print(Event.objects.count(), Variant.objects.count(), ModelArtifact.objects.count(),"
        " Review.objects.count())"
    )
    before = manage(tmp_path, "shell", "-c", count).strip().splitlines()[-1]
    rerun = manage(tmp_path, "prepare_demo", "--visitors", "300", "--epochs", "2")
    assert "Segments exist already: skipped" in rerun
    assert manage(tmp_path, "shell", "-c", count).strip().splitlines()[-1] == before
    admin = manage(
        tmp_path,
        "shell",
        "-c",
        "from django.test import Client; from aigc_django.models import Variant;"
        "c = Client(SERVER_NAME='localhost');"
        "print(c.login(username='editor', password='editor-demo'));"
        "v = Variant.objects.filter(status='pending').first();"
        "print(c.get('/admin/aigc_django/variant/').status_code);"
        "r = c.post(f'/admin/aigc_django/variant/{v.pk}/change/',"
        " {'action': 'approve', 'version': v.version, 'note': ''});"
        "v.refresh_from_db(); print(r.status_code, v.status, v.reviews.count())",
    )
    personas = manage(
        tmp_path,
        "shell",
        "-c",
        "import re; from django.test import Client; from aigc_django.models import Segment;"
        "seen = set();"
        "keys = Segment.objects.filter(kind='learned', size__gt=0).values_list('key', flat=True);"
        "\nfor key in keys:\n"
        "    c = Client(SERVER_NAME='localhost', headers={'User-Agent': 'Mozilla/5.0'});"
        "    c.get('/'); r = c.post(f'/segments/{key}/become/');"
        "    page = c.get('/').content.decode();"
        '    m = re.search(r\'data-aigc-slot="home-hero"[^>]*data-aigc-variant="(\\d+)"\', page)'
        ' or re.search(r\'data-aigc-variant="(\\d+)"[^>]*data-aigc-slot="home-hero"\', page);'
        "    seen.add(m.group(1) if m else None)\n"
        "print(len(keys), len(seen), None in seen)",
    )
    segments, banners, missing = personas.strip().splitlines()[-1].split()
    assert int(segments) >= 2 and missing == "False"
    assert int(banners) >= 2  # different visitors get different banners
    login, queue, decision = admin.strip().splitlines()[-3:]
    assert (login, queue) == ("True", "200")
    assert decision == "302 approved 1"


@pytest.mark.browser
def test_storefront_in_a_browser_shows_each_persona_its_banner(tmp_path, new_page, screenshots):
    """The demo as a person sees it: the example storefront served by runserver, opened in
    headless Chromium; the home page shows an approved banner, and after "Browse as one of
    them" another segment's banner. The screenshots are the ones in the docs."""
    import socket
    import time

    manage(tmp_path, "migrate", "-v", "0")
    # AIGC_DEMO_EPOCHS=12 trains the copy model fully (for the screenshots in the docs).
    epochs = os.environ.get("AIGC_DEMO_EPOCHS", "2")
    manage(tmp_path, "prepare_demo", "--visitors", "300", "--epochs", epochs)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {
        **os.environ,
        "STOREFRONT_DATA_DIR": str(tmp_path),
        "DJANGO_SETTINGS_MODULE": "storefront.settings",
        "PYTHONPATH": str(ROOT),
    }
    server = subprocess.Popen(
        [sys.executable, "manage.py", "runserver", "--noreload", f"127.0.0.1:{port}"],
        cwd=EXAMPLE,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.2)
        page = new_page("storefront")
        page.goto(f"{base}/")
        banner = page.locator('[data-aigc-slot="home-hero"] img').first
        banner.wait_for()
        from tests.test_storefront_browser import NATURAL_WIDTH

        assert banner.evaluate(NATURAL_WIDTH) > 0
        first = page.locator("[data-aigc-variant]").first.get_attribute("data-aigc-variant")
        page.screenshot(path=str(screenshots / "home.png"))
        page.goto(f"{base}/segments/")
        page.screenshot(path=str(screenshots / "segments.png"), full_page=True)
        seen = {first}
        buttons = page.locator("form[action$='/become/'] button")
        for index in range(buttons.count()):
            page.goto(f"{base}/segments/")
            page.locator("form[action$='/become/'] button").nth(index).click()
            page.wait_for_url(f"{base}/")
            variant = page.locator("[data-aigc-variant]").first.get_attribute("data-aigc-variant")
            seen.add(variant)
        page.screenshot(path=str(screenshots / "home-persona.png"))
        assert len(seen) >= 2  # other personas see other banners
    finally:
        server.terminate()
        server.wait(timeout=20)
