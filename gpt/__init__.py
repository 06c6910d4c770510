"""The GPT core: model, training loop, decoding, checkpoints.  Knows nothing about tasks."""
