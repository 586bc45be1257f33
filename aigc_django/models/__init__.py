"""The app's models, one module per pipeline stage."""

from aigc_django.models.content import Review, Slot, Variant
from aigc_django.models.jobs import GenerationJob, ModelArtifact
from aigc_django.models.profiles import Profile, Segment
from aigc_django.models.tracking import Event, EventKind, IngestBatch, Visitor

__all__ = [
    "Event",
    "EventKind",
    "GenerationJob",
    "IngestBatch",
    "ModelArtifact",
    "Profile",
    "Review",
    "Segment",
    "Slot",
    "Variant",
    "Visitor",
]
