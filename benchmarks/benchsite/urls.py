"""The app's API at ``aigc/`` and the plain-Django peer at ``peer/events/``."""

from django.urls import include, path

from benchmarks.benchsite import views

urlpatterns = [
    path("aigc/", include("aigc_django.urls")),
    path("peer/events/", views.PeerEventIngestView.as_view(), name="peer-events"),
]
