from django.apps import apps
from django.urls import path

from aigc_django.api import feedback, slots, views

if apps.is_installed("drf_spectacular"):  # OpenAPI descriptions, for scripts/openapi
    from aigc_django.api import schema  # noqa: F401

urlpatterns = [
    path("events/", views.EventIngestView.as_view(), name="aigc-events"),
    path("me/", views.MyDataView.as_view(), name="aigc-me"),
    path("slots/<slug:key>/", slots.slot_view, name="aigc-slot"),
    path("feedback/", feedback.FeedbackView.as_view(), name="aigc-feedback"),
]
