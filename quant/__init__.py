"""Hugging Face checkpoints in, ternary model images out: ingest, ternarization, packing, the image
format, and the float reference."""
