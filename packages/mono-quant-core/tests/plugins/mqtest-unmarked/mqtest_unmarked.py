"""A plugin that forgot the @hookimpl marker, so pluggy would silently ignore it."""


def mono_quant_schemes():
    return []
