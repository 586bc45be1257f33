"""Tests of aigc_django.contrib.wagtail against a real Wagtail install."""
