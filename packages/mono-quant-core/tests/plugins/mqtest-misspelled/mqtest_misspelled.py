"""A plugin that implements a hook that does not exist (a typo of mono_quant_schemes)."""

from mono_quant.core import hookimpl


@hookimpl
def mono_quant_schemas():
    return []
