"""A Wagtail page model with a StreamField that uses SlotBlock, for the tests."""
