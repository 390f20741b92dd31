"""Every error ``asymmetric`` can raise: its type, and the facts its message must carry.

The checks are :class:`~mono_quant.conformance.differential.ErrorSuite`.
"""

from __future__ import annotations

from mono_quant.conformance.differential import ErrorSuite


class TestErrors(ErrorSuite):
    schemes = ("asymmetric",)
