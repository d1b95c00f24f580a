"""How a model is measured: leave-one-corpus-out, the Whisper head, the noise gate, and the 1.x RAVDESS study (imports tools.model only)."""
