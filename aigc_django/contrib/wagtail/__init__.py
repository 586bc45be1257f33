"""Wagtail integration: a StreamField block that places a personalized slot on any page, and
the review queue in the Wagtail admin menu.

Add ``"aigc_django.contrib.wagtail"`` to ``INSTALLED_APPS`` (after ``"aigc_django"``), then use
``aigc_django.contrib.wagtail.blocks.SlotBlock`` in a StreamField. See docs/wagtail.md.
"""
