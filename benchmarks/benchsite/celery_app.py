"""The site's Celery app, so that a buffered ingest schedules its flush task on Redis.

No worker runs during the benchmarks: the scheduled ``aigc_django.flush_events`` messages
wait in Redis, and the benchmark drains the buffer itself with ``flush_buffer()``.
"""

from celery import Celery

app = Celery("aigc_bench")
app.config_from_object("django.conf:settings", namespace="CELERY")
