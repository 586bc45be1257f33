"""The project's Celery app: ``celery -A storefront worker -Q aigc``, ``celery -A storefront beat``.

Without ``CELERY_BROKER_URL`` the settings make every task run eagerly, in the process that
sends it, so the demo needs no broker and no worker.
"""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "storefront.settings")

app = Celery("storefront")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
