"""What happens to a model after it passed the gate: publish (the registry folder and its
`latest` pointer), triton (the Triton model repository), kserve (the InferenceService objects)
and deploy (applying them), and what serves a published version (the end-to-end Triton model,
the local Triton, the client), and lineage (what a version records of where it came
from). The registries/ adapters sit beside it.
"""
