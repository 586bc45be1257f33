"""REST API (Django REST framework), mounted under ``include("aigc_django.urls")``."""
