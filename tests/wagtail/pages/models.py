from wagtail import blocks
from wagtail.admin.panels import FieldPanel
from wagtail.fields import StreamField
from wagtail.models import Page

from aigc_django.contrib.wagtail.blocks import SlotBlock


class LandingPage(Page):
    """A page whose body mixes ordinary text with personalized slots."""

    body = StreamField(
        [("text", blocks.RichTextBlock()), ("slot", SlotBlock())],
        blank=True,
    )

    content_panels = [*Page.content_panels, FieldPanel("body")]

    template = "aigc_test_pages/landing_page.html"
