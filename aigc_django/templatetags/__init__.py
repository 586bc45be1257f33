"""Template tags of aigc_django: ``{% load aigc %}``."""
