"""Delivery and feedback stages: per-visitor selection, rendering, impressions and clicks."""
