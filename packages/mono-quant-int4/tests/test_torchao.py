"""``int4-symmetric`` and ``int4-asymmetric`` equal torchao 0.18 bit for bit.

Oracle: ``choose_qparams_affine`` (target ``torch.int4`` / ``torch.uint4``, so
torchao uses its own ranges -8..7 and 0..15) and ``quantize_affine`` (codes as
int8 in -8..7, or torchao's uint4 output, which it stores as uint8). The shared
:class:`~mono_quant.conformance.differential.TorchaoSuite` also compares the packed
bytes of ``quantize_tensor(pack=True)`` (nibbles packed inside the quantize loop)
with ``pack`` of the checked codes.
"""

from __future__ import annotations

import torch
from hypothesis import given
from hypothesis import strategies as st

from mono_quant.conformance import strategies as mqst
from mono_quant.conformance.differential import TorchaoSuite
from mono_quant.core import PerGroup, get_scheme


@st.composite
def linear_weights(draw: st.DrawFn) -> torch.Tensor:
    """2-D ``(out, in)`` weights whose input axis is a multiple of the default group size."""
    shape = (draw(st.integers(1, 16)), 128 * draw(st.integers(1, 4)))
    return draw(mqst.tensors(shapes=st.just(shape)), label="w")


class TestTorchao(TorchaoSuite):
    schemes = ("int4-symmetric", "int4-asymmetric")
    packed = True
    sweep_shapes = ((256,), (7,), (3, 128), (64, 4), (2, 96, 3), (3, 4, 5), (2, 32, 2, 3), (2, 3, 4, 5))

    def test_defaults_group_128_along_the_input_axis_equal_torchao(self, scheme_name: str) -> None:
        scheme = get_scheme(scheme_name)  # @given per call: see TorchaoSuite

        @given(w=linear_weights())
        def run(w: torch.Tensor) -> None:
            qp = scheme.compute_qparams(w)
            assert (qp.dtype, qp.granularity) == ("int4", PerGroup(1, 128))
            self.check(scheme, w, None, None)

        run()
