"""Test settings with Wagtail installed as its documentation says, on top of tests.settings.

Run with ``pytest --ds=tests.settings_wagtail tests/wagtail`` (scripts/test does): the
Wagtail tests need their own process, since pytest-django reads the settings once.
"""

from tests.settings import *  # noqa: F403

INSTALLED_APPS = [
    *INSTALLED_APPS,  # noqa: F405
    "aigc_django.contrib.wagtail",
    "tests.wagtail.pages",
    "wagtail.contrib.redirects",
    "wagtail.embeds",
    "wagtail.sites",
    "wagtail.users",
    "wagtail.snippets",
    "wagtail.documents",
    "wagtail.images",
    "wagtail.search",
    "wagtail.admin",
    "wagtail",
    "modelcluster",
    "taggit",
]

MIDDLEWARE = [
    *MIDDLEWARE,  # noqa: F405
    "wagtail.contrib.redirects.middleware.RedirectMiddleware",
]

ROOT_URLCONF = "tests.wagtail.urls"

WAGTAIL_SITE_NAME = "aigc-django tests"
WAGTAILADMIN_BASE_URL = "http://testserver"
WAGTAILDOCS_EXTENSIONS = ["pdf", "txt"]
