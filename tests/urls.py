from django.contrib import admin
from django.urls import include, path

from tests.shopapp import views

urlpatterns = [
    path("admin/", admin.site.urls),
    path("aigc/", include("aigc_django.urls")),
    path("product/<str:sku>/", views.product, name="product"),
    path("plain/", views.plain, name="plain"),
    path("visitor/", views.visitor, name="visitor"),
    path("login/", views.login_view, name="login"),
    path("logout/", views.logout_view, name="logout"),
]
