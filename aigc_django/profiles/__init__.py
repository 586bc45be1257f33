"""Profiles stage: what each visitor likes, and the segments they fall into."""
