"""pytest plugin of mono-quant-conformance (opt-in)."""
