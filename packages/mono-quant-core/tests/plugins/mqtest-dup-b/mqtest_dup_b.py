"""Second of two plugins that register the same names; it also has a unique scheme."""

from mono_quant.core import Capabilities, MinMaxScheme, QuantDtype, hookimpl, symmetric_qparams


class DupScheme(MinMaxScheme):
    name = "test-dup"
    version = "0.0.2"
    capabilities = Capabilities()

    def qparams_from_range(self, lo, hi, dtype):
        return symmetric_qparams(lo, hi, dtype, self.profile)


class OnlyB(DupScheme):
    name = "test-dup-b-only"


@hookimpl
def mono_quant_dtypes():
    # Same name as mqtest-dup-a's int7, different range: a conflict.
    return [QuantDtype("int7", 7, True, -63, 63, "int8")]


@hookimpl
def mono_quant_schemes():
    return [DupScheme(), OnlyB()]
