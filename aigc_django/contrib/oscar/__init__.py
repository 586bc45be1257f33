"""aigc-django for django-oscar shops.

Add ``"aigc_django.contrib.oscar"`` to ``INSTALLED_APPS`` (after Oscar's apps) and set
``AIGC["CATALOG"]`` to :data:`aigc_django.contrib.oscar.catalog.OSCAR_CATALOG`: Oscar's
products become the catalog, and product views, basket additions, searches and checkouts
are tracked through Oscar's own signals. See docs/oscar.md.
"""
