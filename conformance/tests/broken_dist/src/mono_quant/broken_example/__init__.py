"""A deliberately broken mono-quant scheme plugin (a test fixture of mono-quant-conformance)."""
