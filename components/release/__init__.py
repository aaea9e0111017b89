"""release: what serves a published version (Triton models, the local Triton, the client)."""
