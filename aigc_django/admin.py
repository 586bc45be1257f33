"""Admin registrations of the moderation stage (see aigc_django/moderation/).

``slot_admin`` also mounts the content dashboard (URL name ``admin:aigc_django_dashboard``).
"""

from aigc_django.moderation import (  # noqa: F401
    job_admin,
    segment_admin,
    slot_admin,
    variant_admin,
)
