"""The observer interface: batches in, a per-granule range out, qparams through a scheme."""

from __future__ import annotations

import abc
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import torch

from mono_quant.core._affine import raise_nonfinite
from mono_quant.core._dtypes import QuantDtype
from mono_quant.core._errors import (
    MonoQuantError,
    RangeOverflowError,
    UnsupportedDtypeError,
    UnsupportedGranularityError,
    UnsupportedOptionError,
)
from mono_quant.core._granularity import Granularity, PerChannel, PerGroup, PerTensor, granularity_from_dict
from mono_quant.core._granules import GranuleLayout
from mono_quant.core._kernels import all_finite
from mono_quant.core._qparams import QParams
from mono_quant.core._scheme import MinMaxScheme, Scheme, _raise_range_overflow, check_input

if TYPE_CHECKING:
    from typing import Self

__all__ = [
    "OBSERVER_STATE_FORMAT_VERSION",
    "Observer",
    "ObserverCapabilities",
    "ObserverContractError",
    "ObserverError",
    "ObserverNonFinitePolicy",
    "OptionValue",
    "UnknownObserverError",
]

OBSERVER_STATE_FORMAT_VERSION = 1

#: ``raise``: a batch holding NaN/±inf raises NonFiniteError (count, first index) and
#: leaves no trace; ``skip``: such a batch is left out and counted in :attr:`Observer.skipped`.
ObserverNonFinitePolicy = Literal["raise", "skip"]
#: An observer option's value: JSON-ready, so options travel in state dicts and QParams.
OptionValue = bool | int | float | str | None
GranularityKind = Literal["per_tensor", "per_channel", "per_group"]

_F32_MAX = float(torch.finfo(torch.float32).max)


class ObserverError(MonoQuantError):
    """An observer asked for something its state cannot give (no batch yet, a mismatched merge...)."""


class ObserverContractError(MonoQuantError):
    """An observer plugin returned something that breaks the observer contract."""


class UnknownObserverError(MonoQuantError, KeyError):
    """An observer name that no installed plugin provides."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


# Tracebacks and reprs show the public path (mono_quant.core.ObserverError), not _observer.
for _cls in (ObserverError, ObserverContractError, UnknownObserverError):
    _cls.__module__ = "mono_quant.core"


@dataclass(frozen=True)
class ObserverCapabilities:
    """What an observer claims; the conformance suite checks every claim.

    - ``granularities``: the statistics it can keep (per-tensor, per-channel on any axis).
    - ``nonfinite``: the non-finite policies it accepts; the first is its default.
    - ``order_free``: observing a batch equals observing any split of it, in any order
      (the min/max of a union does not depend on how it was cut; a moving average does).
    - ``merge``: ``"exact"`` when ``a.merge(b)`` equals observing a's batches then b's,
      bit for bit; ``"approximate"`` when the merge re-bins (a histogram's).
    - ``reference``: the oracle its default behaviour is tested against, bit for bit.

    >>> ObserverCapabilities().to_dict()["merge"]
    'exact'
    """

    granularities: tuple[GranularityKind, ...] = ("per_tensor", "per_channel")
    nonfinite: tuple[ObserverNonFinitePolicy, ...] = ("raise", "skip")
    order_free: bool = True
    merge: Literal["exact", "approximate"] = "exact"
    reference: str | None = None

    def to_dict(self) -> dict[str, object]:
        """JSON-ready form, for reports."""
        return {
            "granularities": list(self.granularities),
            "nonfinite": list(self.nonfinite),
            "order_free": self.order_free,
            "merge": self.merge,
            "reference": self.reference,
        }


class Observer(abc.ABC):
    """Sees batches, keeps a small state, and gives :class:`QParams` through a scheme.

    Callers use :meth:`observe`, :meth:`merge`, :meth:`state_dict`,
    :meth:`load_state_dict`, :meth:`reset` and :meth:`qparams`; each checks its
    arguments and the contract, then calls the one method a plugin overrides for
    that concept: :meth:`update`, :meth:`merge_state`, :meth:`export_state`,
    :meth:`import_state`, :meth:`reset_state` and :meth:`compute_range`.

    A subclass sets ``name``, ``version`` and ``capabilities``; its ``__init__`` takes
    typed keyword options and passes them on as ``options`` (JSON-ready values),
    so they travel in state dicts and in the QParams it produces.

    >>> import torch
    >>> from mono_quant.core import MinMaxScheme, asymmetric_qparams
    >>> class LastMax(Observer):  # the largest value of the last batch, a toy
    ...     name, version = "last-max", "1"
    ...     def reset_state(self): self.hi = None
    ...     def update(self, rows): self.hi = rows.amax(dim=1)
    ...     def merge_state(self, other): self.hi = other.hi
    ...     def export_state(self): return {"hi": self.hi}
    ...     def import_state(self, state): self.hi = state["hi"]
    ...     def compute_range(self, dtype, scheme): return torch.tensor(0.0), self.hi.reshape(())
    >>> class Asym(MinMaxScheme):
    ...     name, version = "asym-demo", "1"
    ...     def qparams_from_range(self, lo, hi, dtype):
    ...         return asymmetric_qparams(lo, hi, dtype, self.profile)
    >>> obs = LastMax()
    >>> obs.observe(torch.tensor([1.0, 2.55]))
    >>> qp = obs.qparams(Asym(), "uint8")
    >>> round(qp.scale.item(), 6), obs.batches, obs.state_dict()["observer"]
    (0.01, 1, 'last-max')
    """

    name: str = ""
    version: str = ""
    capabilities: ObserverCapabilities = ObserverCapabilities()
    #: The distribution that registered this observer (set by :func:`get_observer`).
    distribution: str = ""

    def __init__(
        self,
        granularity: Granularity | None = None,
        *,
        nonfinite: ObserverNonFinitePolicy = "raise",
        options: Mapping[str, OptionValue] | None = None,
    ) -> None:
        caps = self.capabilities
        gran = PerTensor() if granularity is None else granularity
        if not isinstance(gran, (PerTensor, PerChannel, PerGroup)):
            raise UnsupportedGranularityError(
                f"granularity must be PerTensor() or PerChannel(axis); got {gran!r}."
            )
        if gran.kind not in caps.granularities:
            raise UnsupportedGranularityError(
                f"observer {self.name!r} does not keep {gran} statistics; it supports: "
                f"{', '.join(caps.granularities)}."
            )
        if nonfinite not in caps.nonfinite:
            raise UnsupportedOptionError(
                f"observer {self.name!r} does not accept nonfinite={nonfinite!r}; "
                f"it accepts: {', '.join(caps.nonfinite)}."
            )
        self.granularity: Granularity = gran
        self.nonfinite: ObserverNonFinitePolicy = nonfinite
        self.options: dict[str, OptionValue] = dict(options or {})
        self._batches = 0
        self._elements = 0
        self._skipped = 0
        self._channels: int | None = None
        self.reset_state()

    # ---- what callers use -------------------------------------------------------------

    @property
    def batches(self) -> int:
        """Batches observed (skipped ones not included)."""
        return self._batches

    @property
    def elements(self) -> int:
        """Elements observed over every batch."""
        return self._elements

    @property
    def skipped(self) -> int:
        """Batches left out under ``nonfinite="skip"``."""
        return self._skipped

    def observe(self, x: torch.Tensor, *, name: str | None = None) -> None:
        """Add one batch to the statistics (float32 math whatever ``x``'s float dtype).

        An empty batch is refused, a non-finite one follows :attr:`nonfinite`;
        a refused batch leaves the state as it was. ``name`` labels the batch in errors.
        ``x`` is never modified.
        """
        label = name or f"batch {self._batches + self._skipped} of observer {self.name}"
        check_input(x, name=label)
        gran = self.granularity
        if x.dim() == 0 and not isinstance(gran, PerTensor):
            raise UnsupportedGranularityError(f"{gran} needs at least one dimension; {label!r} is 0-d.")
        layout = GranuleLayout.of(tuple(x.shape), gran, name=label)
        channels = None
        if isinstance(gran, PerChannel) and isinstance(layout.granularity, PerChannel):
            channels = x.shape[layout.granularity.axis]
            if self._channels is not None and channels != self._channels:
                raise ObserverError(
                    f"{label!r} has {channels} channels along axis {gran.axis} "
                    f"(shape {tuple(x.shape)}); the observer has seen {self._channels}. Every batch "
                    f"of a per-channel observer must have the same channel count."
                )
        if not all_finite(x):
            if self.nonfinite == "skip":
                self._skipped += 1
                return
            raise_nonfinite(x, label)
        if x.dtype == torch.float64 and float(x.abs().max()) > _F32_MAX:
            raise RangeOverflowError(
                f"{label!r} holds values beyond float32's range (max |x| = {float(x.abs().max()):g}); "
                f"observers compute in float32. Rescale the tensor."
            )
        self.update(layout.to_rows(x).to(torch.float32))
        self._batches += 1
        self._elements += x.numel()
        if channels is not None:
            self._channels = channels

    def merge(self, other: Observer) -> None:
        """Fold ``other``'s statistics into this observer, as if it had also seen its batches.

        Both must be the same observer with the same granularity and options. With
        ``capabilities.merge == "exact"`` the result equals observing this
        observer's batches, then ``other``'s. ``other`` is not changed.
        """
        if type(other) is not type(self):
            raise ObserverError(
                f"cannot merge observer {other.name!r} ({type(other).__name__}) into observer "
                f"{self.name!r} ({type(self).__name__}); merge observers of the same kind."
            )
        self._check_compatible(other.name, other.granularity, other.options, f"observer {other.name!r}")
        if self._channels is not None and other._channels is not None and self._channels != other._channels:
            raise ObserverError(
                f"cannot merge observers that saw {self._channels} and {other._channels} channels."
            )
        self.merge_state(other)
        self._batches += other._batches
        self._elements += other._elements
        self._skipped += other._skipped
        self._channels = self._channels if self._channels is not None else other._channels

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue or merge later: config, counters and statistics.

        Plain Python values and CPU tensors, loadable with ``torch.load(weights_only=True)``.
        """
        return {
            "format_version": OBSERVER_STATE_FORMAT_VERSION,
            "observer": self.name,
            "observer_version": self.version,
            "granularity": self.granularity.to_dict(),
            "nonfinite": self.nonfinite,
            "options": dict(self.options),
            "batches": self._batches,
            "elements": self._elements,
            "skipped": self._skipped,
            "channels": self._channels,
            "state": {k: _to_cpu(v) for k, v in self.export_state().items()},
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what :meth:`state_dict` saved; refuse a state of another observer or config."""
        version = state.get("format_version")
        if not isinstance(version, int) or version > OBSERVER_STATE_FORMAT_VERSION:
            raise ObserverError(
                f"observer state format version {version!r} is not one this mono-quant-core reads "
                f"(up to {OBSERVER_STATE_FORMAT_VERSION}); upgrade mono-quant-core."
            )
        try:
            gran = granularity_from_dict(dict(state["granularity"]))
            self._check_compatible(str(state["observer"]), gran, state["options"], "the saved state")
            counters = [int(state[k]) for k in ("batches", "elements", "skipped")]
            channels = state["channels"]
            saved = dict(state["state"])
        except KeyError as exc:
            raise ObserverError(f"observer state is missing the key {exc.args[0]!r}.") from None
        self.reset_state()
        self.import_state({k: v.clone() if isinstance(v, torch.Tensor) else v for k, v in saved.items()})
        self._batches, self._elements, self._skipped = counters
        self._channels = None if channels is None else int(channels)

    def reset(self) -> None:
        """Forget every batch: the observer is as new (same configuration)."""
        self._batches = self._elements = self._skipped = 0
        self._channels = None
        self.reset_state()

    def qparams(
        self,
        scheme: Scheme | str,
        dtype: str | QuantDtype | None = None,
        granularity: Granularity | None = None,
        *,
        name: str | None = None,
    ) -> QParams:
        """QParams for ``dtype`` from the observed range, computed by ``scheme`` (an object or a name).

        ``scheme`` must be range-based (a :class:`MinMaxScheme`): it turns the
        per-granule range this observer chose into scale and zero-point, so the
        math conventions (range includes zero, eps before the zero-point, float32)
        are the scheme's. ``granularity``, if given, must be the observer's own.
        A float target (float16/bfloat16) gives cast qparams, as from a scheme.
        """
        from mono_quant.core._registry import get_dtype, get_scheme

        if isinstance(scheme, str):
            scheme = get_scheme(scheme)
        qd = dtype if isinstance(dtype, QuantDtype) else get_dtype(dtype or scheme.capabilities.default_dtype)
        label = name or f"observer {self.name!r}"
        gran = self.granularity
        if granularity is not None and granularity != gran:
            raise UnsupportedGranularityError(
                f"{label} keeps {gran} statistics; it cannot give qparams for {granularity}. "
                f"Observe with an observer created for {granularity}."
            )
        if not scheme.supports_dtype(qd):
            raise UnsupportedDtypeError(f"scheme {scheme.name!r} does not support dtype {qd.name!r}.")
        if gran.kind not in scheme.capabilities.granularities:
            raise UnsupportedGranularityError(
                f"scheme {scheme.name!r} does not support {gran}; it supports: "
                f"{', '.join(scheme.capabilities.granularities)}."
            )
        extra = {
            "observer": self.name,
            "observer_version": self.version,
            "observer_options": json.dumps(self.options, sort_keys=True),
        }
        common: dict[str, Any] = {
            "dtype": qd.name,
            "scheme": scheme.name,
            "scheme_version": scheme.version,
            "profile": scheme.profile.name,
            "compute_dtype": scheme.profile.compute_dtype,
            "extra": extra,
        }
        if qd.is_float:
            return QParams(None, None, granularity=PerTensor(), affine=True, **common)
        if not isinstance(scheme, MinMaxScheme):
            raise UnsupportedOptionError(
                f"scheme {scheme.name!r} computes qparams from the tensor itself, not from a range; "
                f"an observer can only feed a range-based scheme (a MinMaxScheme)."
            )
        if self._elements == 0:
            raise ObserverError(
                f"{label} has observed no batch"
                + (f" ({self._skipped} skipped as non-finite)" if self._skipped else "")
                + "; call observe(x) with calibration data first."
            )
        lo, hi = self.compute_range(qd, scheme)
        qshape = () if isinstance(gran, PerTensor) else (self._channels or 0,)
        self._check_range(lo, hi, qshape)
        scale, zero_point = scheme.qparams_from_range(lo, hi, qd)
        if isinstance(scale, torch.Tensor) and not bool(torch.isfinite(scale).all()):
            _raise_range_overflow(scale, lo, hi, torch.float32, scheme.profile.name, label)
        layout = GranuleLayout(qshape, gran, qshape, 0)
        scheme._check_result(scale, zero_point, qd, layout, lo)
        return QParams(scale, zero_point, granularity=gran, affine=scheme.capabilities.affine, **common)

    def describe(self) -> dict[str, object]:
        """Name, version, distribution, granularity, policy, options, counters and capabilities."""
        return {
            "name": self.name,
            "version": self.version,
            "distribution": self.distribution,
            "granularity": self.granularity.to_dict(),
            "nonfinite": self.nonfinite,
            "options": dict(self.options),
            "batches": self._batches,
            "skipped": self._skipped,
            "capabilities": self.capabilities.to_dict(),
        }

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r} {self.granularity} batches={self._batches}>"

    # ---- what a plugin overrides: one method per concept ---------------------------------

    @abc.abstractmethod
    def reset_state(self) -> None:
        """Set the statistics to their empty state (called by ``__init__`` and :meth:`reset`)."""

    @abc.abstractmethod
    def update(self, rows: torch.Tensor) -> None:
        """Add a checked, finite batch given as float32 ``(granules, elements)`` rows.

        Row ``i`` holds granule ``i``'s values (one row per tensor, or one per
        channel). ``rows`` may be a view of the caller's tensor: never modify it.
        """

    @abc.abstractmethod
    def merge_state(self, other: Self) -> None:
        """Fold the statistics of ``other`` (same class, granularity and options) into these."""

    @abc.abstractmethod
    def export_state(self) -> dict[str, torch.Tensor | int | float | str | None]:
        """The statistics as plain values and tensors (copied to CPU by :meth:`state_dict`)."""

    @abc.abstractmethod
    def import_state(self, state: dict[str, Any]) -> None:
        """Set the statistics from :meth:`export_state`'s output (tensors already copied)."""

    @abc.abstractmethod
    def compute_range(self, dtype: QuantDtype, scheme: Scheme) -> tuple[torch.Tensor, torch.Tensor]:
        """The chosen per-granule ``(lo, hi)``: float32, shape ``()`` or ``(C,)``, finite.

        Called only after at least one batch. ``dtype`` and ``scheme`` are the target,
        for observers whose choice depends on the quantization grid. The scheme widens
        the range to include 0, so ``lo`` may exceed ``hi`` by rounding (a moving
        average of a constant can) without harm.
        """

    # ---- contract checks ----------------------------------------------------------------

    def _check_compatible(
        self, other_name: str, gran: Granularity, options: Mapping[str, object], what: str
    ) -> None:
        if other_name != self.name:
            raise ObserverError(f"{what} is of observer {other_name!r}, not {self.name!r}.")
        if gran != self.granularity:
            raise ObserverError(f"{what} keeps {gran} statistics; this observer keeps {self.granularity}.")
        theirs = dict(options)
        if theirs != self.options:
            diff = sorted(k for k in set(theirs) | set(self.options) if theirs.get(k) != self.options.get(k))
            detail = ", ".join(f"{k}: {theirs.get(k)!r} vs {self.options.get(k)!r}" for k in diff)
            raise ObserverError(f"{what} has other options than this {self.name!r} observer ({detail}).")

    def _check_range(self, lo: object, hi: object, qshape: tuple[int, ...]) -> None:
        problems: list[str] = []
        if not isinstance(lo, torch.Tensor) or not isinstance(hi, torch.Tensor):
            problems.append(f"must return two tensors, got {type(lo).__name__} and {type(hi).__name__}")
        else:
            for what, t in (("lo", lo), ("hi", hi)):
                if t.dtype != torch.float32 or tuple(t.shape) != qshape:
                    problems.append(
                        f"{what} must be float32 of shape {qshape}, got {t.dtype} {tuple(t.shape)}"
                    )
            if not problems and not (bool(torch.isfinite(lo).all()) and bool(torch.isfinite(hi).all())):
                problems.append("lo and hi must be finite")
        if problems:
            raise ObserverContractError(
                f"observer {self.name!r} ({self.distribution or type(self).__module__}) broke the observer "
                f"contract in compute_range: {'; '.join(problems)}. This is a bug in the observer plugin; "
                f"report it to its authors."
            )


def _to_cpu(value: object) -> object:
    if isinstance(value, torch.Tensor):
        return value.detach().to("cpu", copy=True)
    return value
