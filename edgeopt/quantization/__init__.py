"""Quantization: full-integer post-training quantization (PTQ)."""
