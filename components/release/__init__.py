"""What happens to a model after it passed the gate: publish (the registry folder and its
`latest` pointer, the model card), triton (the Triton model repository), kserve (the
InferenceService objects) and deploy (applying them). The registries/ adapters sit beside it.
"""
