"""Mount with ``path("aigc/", include("aigc_django.urls"))``."""

from django.urls import include, path

app_name = "aigc"

urlpatterns = [
    path("api/", include("aigc_django.api.urls")),
]
