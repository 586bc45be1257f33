"""Tracking stage: recognise visitors and record what they do."""
