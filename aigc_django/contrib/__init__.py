"""Adapters for frameworks that sites build on: django-oscar and Wagtail."""
