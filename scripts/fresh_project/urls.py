from catalog.views import product
from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("aigc/", include("aigc_django.urls")),
    path("product/<str:sku>/", product),
]
