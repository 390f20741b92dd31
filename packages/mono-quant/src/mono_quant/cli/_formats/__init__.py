"""Output formats: native (mono-quant's own) and compressed-tensors (what vLLM loads)."""
