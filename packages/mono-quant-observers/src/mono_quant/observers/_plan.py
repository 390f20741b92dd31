"""The calibration plan: which activations to observe, with which observer, for which target."""

from __future__ import annotations

import fnmatch
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import torch

from mono_quant.core import (
    Granularity,
    MonoQuantError,
    Observer,
    PerTensor,
    Scheme,
    get_dtype,
    get_observer,
    get_scheme,
    granularity_from_dict,
)
from mono_quant.core._observer import ObserverNonFinitePolicy, OptionValue

__all__ = ["PLAN_FORMAT_VERSION", "CalibrationError", "CalibrationPlan"]

PLAN_FORMAT_VERSION = 1
Role = Literal["input", "output"]


class CalibrationError(MonoQuantError):
    """A calibration that cannot run as asked: no module selected, an input that is not a tensor..."""


CalibrationError.__module__ = "mono_quant.observers"


@dataclass(frozen=True)
class CalibrationPlan:
    """What :func:`calibrate` observes and what it computes, as one serialisable value.

    - ``observer`` / ``options`` / ``nonfinite``: the observer (by registered name),
      its options and its non-finite policy, one fresh observer per activation. An
      observer that searches for a target grid (``mse``) gets its ``dtype`` and
      ``symmetric`` options from the plan's target unless ``options`` sets them.
    - ``scheme`` / ``profile`` / ``dtype`` / ``granularity``: the target of the
      activation qparams (``PerChannel(-1)``: one scale per hidden unit).
    - ``module_types``: class names a module (or one of its base classes) must
      have; ``include`` / ``exclude``: ``fnmatch`` patterns over module names.
    - ``inputs`` / ``outputs``: observe each selected module's first input, output, or both.
    - ``padding_mask``: the key of mapping batches (``"attention_mask"``) whose zeros
      mark padding; an activation shaped ``(batch, tokens, ...)`` like it is observed
      without the padded positions (per channel then needs a negative axis).

    >>> plan = CalibrationPlan(observer="percentile", options={"upper": 99.9}, exclude=("pooler.*",))
    >>> CalibrationPlan.from_dict(plan.to_dict()) == plan
    True
    """

    observer: str = "minmax"
    options: Mapping[str, OptionValue] = field(default_factory=dict)
    nonfinite: ObserverNonFinitePolicy = "raise"
    scheme: str = "asymmetric"
    profile: str = "default"
    dtype: str = "uint8"
    granularity: Granularity = field(default_factory=PerTensor)
    module_types: tuple[str, ...] = ("Linear",)
    include: tuple[str, ...] = ("*",)
    exclude: tuple[str, ...] = ()
    inputs: bool = True
    outputs: bool = False
    padding_mask: str | None = None

    def __post_init__(self) -> None:
        for attr in ("module_types", "include", "exclude"):
            value = getattr(self, attr)
            if isinstance(value, str) or not all(isinstance(v, str) for v in value):
                raise CalibrationError(f"{attr} must be a tuple of strings; got {value!r}.")
            object.__setattr__(self, attr, tuple(value))
        object.__setattr__(self, "options", dict(self.options))
        if not (self.inputs or self.outputs):
            raise CalibrationError("inputs and outputs are both False: the plan observes nothing.")
        if self.padding_mask is not None and getattr(self.granularity, "axis", -1) >= 0:
            raise CalibrationError(
                f"with padding_mask, padded positions are dropped from the (batch, tokens) axes, so "
                f"{self.granularity} must count its axis from the end (e.g. PerChannel(-1))."
            )

    @property
    def roles(self) -> tuple[Role, ...]:
        """``("input",)``, ``("output",)`` or both, in that order."""
        out: list[Role] = []
        if self.inputs:
            out.append("input")
        if self.outputs:
            out.append("output")
        return tuple(out)

    def new_observer(self) -> Observer:
        """A fresh observer as the plan describes it (target options filled in, see above)."""
        options = dict(self.options)
        takes = _observer_options(self.observer)
        if "dtype" in takes:
            options.setdefault("dtype", self.dtype)
        if "symmetric" in takes:
            options.setdefault("symmetric", self.get_scheme().capabilities.symmetric)
        return get_observer(self.observer, self.granularity, nonfinite=self.nonfinite, **options)

    def get_scheme(self) -> Scheme:
        """The target scheme, configured with the plan's profile."""
        return get_scheme(self.scheme, profile=self.profile)

    def check(self) -> None:
        """Fail now, before any batch runs, if the observer, scheme or dtype cannot work together.

        A dry run: a fresh observer sees one small batch of ones and gives qparams.
        """
        obs = self.new_observer()
        get_dtype(self.dtype)
        axis = getattr(self.granularity, "axis", 0)
        obs.observe(torch.ones((1,) * (axis + 1 if axis >= 0 else -axis)), name="the dry-run batch")
        obs.qparams(self.get_scheme(), self.dtype, self.granularity, name="the plan's dry run")

    def select(self, model: torch.nn.Module) -> list[str]:
        """Names of the modules of ``model`` this plan observes, in ``named_modules`` order.

        >>> model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
        >>> CalibrationPlan().select(model)
        ['0', '2']
        """
        wanted = set(self.module_types)
        out = []
        for name, module in model.named_modules():
            if not name or not wanted & {cls.__name__ for cls in type(module).__mro__}:
                continue
            if any(fnmatch.fnmatchcase(name, p) for p in self.include) and not any(
                fnmatch.fnmatchcase(name, p) for p in self.exclude
            ):
                out.append(name)
        if not out:
            present = sorted({type(m).__name__ for _, m in model.named_modules()})
            raise CalibrationError(
                f"no module of the model matches module_types={list(self.module_types)}, "
                f"include={list(self.include)}, exclude={list(self.exclude)}; the model has modules "
                f"of types: {', '.join(present)}."
            )
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (stored with calibration states and results)."""
        return {
            "format_version": PLAN_FORMAT_VERSION,
            "observer": self.observer,
            "options": dict(self.options),
            "nonfinite": self.nonfinite,
            "scheme": self.scheme,
            "profile": self.profile,
            "dtype": self.dtype,
            "granularity": self.granularity.to_dict(),
            "module_types": list(self.module_types),
            "include": list(self.include),
            "exclude": list(self.exclude),
            "inputs": self.inputs,
            "outputs": self.outputs,
            "padding_mask": self.padding_mask,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CalibrationPlan:
        """Rebuild a plan from :meth:`to_dict` (or its JSON)."""
        version = data.get("format_version", PLAN_FORMAT_VERSION)
        if not isinstance(version, int) or version > PLAN_FORMAT_VERSION:
            raise CalibrationError(
                f"calibration plan format version {version!r} is newer than this mono-quant-observers "
                f"reads ({PLAN_FORMAT_VERSION}); upgrade mono-quant-observers."
            )
        fields = {k: v for k, v in data.items() if k != "format_version"}
        unknown = sorted(set(fields) - set(cls.__dataclass_fields__))
        if unknown:
            raise CalibrationError(f"calibration plan has unknown field(s) {', '.join(unknown)}.")
        if "granularity" in fields:
            gran = fields["granularity"]
            fields["granularity"] = granularity_from_dict(json.loads(gran) if isinstance(gran, str) else gran)
        for key in ("module_types", "include", "exclude"):
            if key in fields:
                fields[key] = tuple(fields[key])
        return cls(**fields)

    def diff(self, other: CalibrationPlan) -> list[str]:
        """The fields on which ``other`` differs, as ``field: ours vs theirs``."""
        a, b = self.to_dict(), other.to_dict()
        return [f"{k}: {a[k]!r} vs {b[k]!r}" for k in a if a[k] != b[k]]


def _observer_options(name: str) -> set[str]:
    """The option names observer ``name`` takes (none if it is not installed: get_observer says so)."""
    import inspect

    from mono_quant.core import MonoQuantError

    try:
        cls = type(get_observer(name))
    except MonoQuantError:
        return set()
    return set(inspect.signature(cls).parameters) - {"granularity", "nonfinite", "options"}
