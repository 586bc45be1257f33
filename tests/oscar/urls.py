"""URLs of the Oscar test shop: the tracked category view, then Oscar's shop as its docs
include it."""

from django.apps import apps
from django.urls import include, path, re_path

from aigc_django.contrib.oscar.views import TrackedCategoryView

urlpatterns = [
    path("aigc/", include("aigc_django.urls")),
    re_path(
        r"^catalogue/category/(?P<category_slug>[\w-]+(/[\w-]+)*)_(?P<pk>\d+)/$",
        TrackedCategoryView.as_view(),
    ),
    path("", include(apps.get_app_config("oscar").urls[0])),
]
