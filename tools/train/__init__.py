"""The shipped model: `python -m tools.train`, the multi-corpus model and its card, the 1.x RAVDESS-only model (the top layer of tools/)."""
