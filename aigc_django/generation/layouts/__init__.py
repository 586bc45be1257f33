"""The learned layout model: a conditional VAE over banner layouts.

* :mod:`.encoding`: layouts and their conditions (size, content, segment) as numbers;
* :mod:`.model`: the VAE (torch), saved as config JSON + safetensors;
* :mod:`.data`: training layouts from the composer and from approved, clicked variants;
* :mod:`.train`: ``train_layout_model()``, a new versioned ``ModelArtifact(kind="layout")``;
* :mod:`.runtime`: the active model, loaded once per process, seeded sampling;
* :mod:`.repair`: sampled layouts made to keep the composer's hard constraints;
* :mod:`.metrics`: the PKU PosterLayout graphic metrics.

The composer (:mod:`aigc_django.generation.compose`) uses all of this through
``choose_layout``; nothing here is imported until a banner is composed.
"""
