from django.urls import path

from shop import views

app_name = "shop"

urlpatterns = [
    path("", views.home, name="home"),
    path("c/<slug:slug>/", views.category, name="category"),
    path("p/<str:sku>/", views.product, name="product"),
    path("search/", views.search, name="search"),
    path("cart/", views.cart, name="cart"),
    path("cart/add/<str:sku>/", views.cart_add, name="cart-add"),
    path("cart/remove/<str:sku>/", views.cart_remove, name="cart-remove"),
    path("checkout/", views.checkout, name="checkout"),
    path("checkout/done/", views.checkout_done, name="checkout-done"),
    path("segments/", views.segments, name="segments"),
    path("segments/<slug:key>/become/", views.become, name="become"),
    path("generated/", views.generated, name="generated"),
    path("your-data/", views.your_data, name="your-data"),
]
