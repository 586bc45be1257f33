"""Mount with ``path("aigc/", include("aigc_django.urls"))``."""

from django.urls import include, path

from aigc_django.delivery.views import click_redirect

app_name = "aigc"

urlpatterns = [
    path("api/", include("aigc_django.api.urls")),
    path("r/<str:token>/", click_redirect, name="click"),
]
