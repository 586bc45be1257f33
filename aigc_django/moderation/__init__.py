"""Moderation stage: the review queue, audit trail and dashboard in the Django admin."""
