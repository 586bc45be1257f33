"""Oscar's category view, tracked: Oscar sends no signal when a category page is shown."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse
from oscar.core.loading import get_class

from aigc_django.contrib.oscar.receivers import track_category_view

# get_class finds the shop's fork of the view when the catalogue app is forked.
ProductCategoryView = get_class("catalogue.views", "ProductCategoryView")


class TrackedCategoryView(ProductCategoryView):
    """Oscar's ``ProductCategoryView`` that records a ``category_view`` event when it shows
    a category page (not for redirects or errors).

    Route Oscar's category URL to it in the project's URLconf, before Oscar's URLs::

        re_path(
            r"^catalogue/category/(?P<category_slug>[\\w-]+(/[\\w-]+)*)_(?P<pk>\\d+)/$",
            TrackedCategoryView.as_view(),
        ),
    """

    def get(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        response = super().get(request, *args, **kwargs)
        if response.status_code == 200:
            track_category_view(request, self.category)
        return response
