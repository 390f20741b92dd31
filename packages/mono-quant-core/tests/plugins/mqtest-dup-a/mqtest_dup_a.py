"""First of two plugins that register the same scheme name and the same dtype name."""

from mono_quant.core import Capabilities, MinMaxScheme, QuantDtype, asymmetric_qparams, hookimpl


class DupScheme(MinMaxScheme):
    name = "test-dup"
    version = "0.0.1"
    capabilities = Capabilities()

    def qparams_from_range(self, lo, hi, dtype):
        return asymmetric_qparams(lo, hi, dtype, self.profile)


@hookimpl
def mono_quant_dtypes():
    return [QuantDtype("int7", 7, True, -64, 63, "int8")]


@hookimpl
def mono_quant_schemes():
    return [DupScheme()]
