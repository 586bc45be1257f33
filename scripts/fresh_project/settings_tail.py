# ruff: noqa: F821  (appended to the settings.py that startproject wrote)

# --- added as docs/install.md says ---
INSTALLED_APPS += ["rest_framework", "aigc_django", "catalog"]
MIDDLEWARE += ["aigc_django.tracking.middleware.VisitorMiddleware"]
AIGC = {
    "CATALOG": {
        "MODEL": "catalog.Product",
        "FIELDS": {"key": "sku", "title": "name", "category": "category", "price": "price"},
    },
}
