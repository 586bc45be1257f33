"""Settings for generating the OpenAPI schema with drf-spectacular (scripts/openapi).

The test settings plus drf_spectacular; nothing else changes.
"""

from tests.settings import *  # noqa: F403
from tests.settings import INSTALLED_APPS

INSTALLED_APPS = [*INSTALLED_APPS, "drf_spectacular"]

REST_FRAMEWORK = {
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
}

SPECTACULAR_SETTINGS = {
    "TITLE": "aigc-django API",
    "DESCRIPTION": (
        "The REST API of aigc-django, mounted at /aigc/ by "
        'path("aigc/", include("aigc_django.urls")). See docs/api.md.'
    ),
    "VERSION": "0.1.0",
    "SERVE_INCLUDE_SCHEMA": False,
}
