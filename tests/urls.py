import re

from django.conf import settings
from django.contrib import admin
from django.urls import include, path, re_path

from tests.shopapp import views

urlpatterns = [
    path("admin/", admin.site.urls),
    path("aigc/", include("aigc_django.urls")),
    path("product/<str:sku>/", views.product, name="product"),
    path("plain/", views.plain, name="plain"),
    path("visitor/", views.visitor, name="visitor"),
    path("login/", views.login_view, name="login"),
    path("logout/", views.logout_view, name="logout"),
    # A storefront page that shows a slot through the delivery tags, as a visitor sees it.
    path("store/", views.store, name="store"),
    path("store/client/", views.store_client, name="store-client"),
    path("store/landing/", views.landing, name="store-landing"),
    # Tests only: the live server serves uploaded and generated files from MEDIA_ROOT.
    re_path(rf"^{re.escape(settings.MEDIA_URL.lstrip('/'))}(?P<path>.+)$", views.media_file),
]
