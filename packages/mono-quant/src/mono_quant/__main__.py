"""``python -m mono_quant``: the same as the ``mono-quant`` command."""

from mono_quant.cli._console import run

run()
