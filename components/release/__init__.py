"""release: what serves a published version (Triton repository models, the local Triton, clients)."""
