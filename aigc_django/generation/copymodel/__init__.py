"""The builtin copy model: a small conditional transformer trained on the shop's own text.

- ``tokenizer``: word-level tokens, placeholders and control tokens;
- ``corpus``: training examples from the catalog, slot briefs, approved copy and a starter set;
- ``model``: the transformer, its config, saving and loading (config.json + model.safetensors);
- ``sample``: batched, seeded sampling of candidates and their ranking under constraints;
- ``train``: ``train_copy_model()``, which makes a new versioned ``ModelArtifact``;
- ``quality``: fact checks, distinct-n and segment relevance of generated copy.
"""
