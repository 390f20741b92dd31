"""mono-quant-conformance: the suite every scheme plugin runs."""
