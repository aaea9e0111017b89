"""release: what serves a published version (Triton models, the local Triton, the client),
and what it records of where it came from (lineage)."""
