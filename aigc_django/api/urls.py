from django.urls import path

from aigc_django.api import views

urlpatterns = [
    path("events/", views.EventIngestView.as_view(), name="aigc-events"),
    path("me/", views.MyDataView.as_view(), name="aigc-me"),
]
