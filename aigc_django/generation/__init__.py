"""Generation stage: briefs, backends, banner composition, safety checks and the service."""
