"""The observer contract core enforces around every observer, and the observer hook's loading.

Core ships no observer: the tests define a tiny one (running min/max) and broken variants.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import torch

from mono_quant.core import (
    AxisError,
    EmptyTensorError,
    InputDtypeError,
    NonFiniteError,
    Observer,
    ObserverCapabilities,
    ObserverContractError,
    ObserverError,
    PerChannel,
    PerGroup,
    PerTensor,
    QuantDtype,
    RangeOverflowError,
    Scheme,
    UnknownObserverError,
    UnsupportedDtypeError,
    UnsupportedGranularityError,
    UnsupportedOptionError,
    get_observer,
)


class RangeObserver(Observer):
    """Running per-row min and max."""

    name, version = "test-range", "1"

    def __init__(self, granularity: Any = None, *, nonfinite: Any = "raise", shift: float = 0.0) -> None:
        super().__init__(granularity, nonfinite=nonfinite, options={"shift": shift})

    def reset_state(self) -> None:
        self.lo: torch.Tensor | None = None
        self.hi: torch.Tensor | None = None

    def update(self, rows: torch.Tensor) -> None:
        lo, hi = rows.amin(dim=1), rows.amax(dim=1)
        self.lo = lo if self.lo is None else torch.min(self.lo, lo)
        self.hi = hi if self.hi is None else torch.max(self.hi, hi)

    def merge_state(self, other: RangeObserver) -> None:
        if other.lo is not None and other.hi is not None:
            self.lo = other.lo.clone() if self.lo is None else torch.min(self.lo, other.lo)
            self.hi = other.hi.clone() if self.hi is None else torch.max(self.hi, other.hi)

    def export_state(self) -> dict[str, torch.Tensor | int | float | str | None]:
        return {"lo": self.lo, "hi": self.hi}

    def import_state(self, state: dict[str, Any]) -> None:
        self.lo, self.hi = state["lo"], state["hi"]

    def compute_range(self, dtype: QuantDtype, scheme: Scheme) -> tuple[torch.Tensor, torch.Tensor]:
        assert self.lo is not None and self.hi is not None
        shape = () if self.granularity.kind == "per_tensor" else (-1,)
        return self.lo.reshape(shape), self.hi.reshape(shape)


def fed(*batches: torch.Tensor, granularity: Any = None, **kw: Any) -> RangeObserver:
    obs = RangeObserver(granularity, **kw)
    for b in batches:
        obs.observe(b)
    return obs


def test_qparams_come_from_the_scheme_on_the_observed_range(asym: Scheme) -> None:
    obs = fed(torch.tensor([-1.0, 0.5]), torch.tensor([3.0, 2.0]))
    qp = obs.qparams(asym, "uint8")
    want = asym.compute_qparams(torch.tensor([-1.0, 3.0]), "uint8")
    assert qp.scale is not None and want.scale is not None and qp.zero_point is not None
    assert torch.equal(qp.scale, want.scale) and torch.equal(qp.zero_point, want.zero_point)
    assert (qp.scheme, qp.dtype, qp.profile) == (asym.name, "uint8", "default")
    assert qp.extra["observer"] == "test-range" and json.loads(qp.extra["observer_options"]) == {"shift": 0.0}
    assert obs.qparams(asym, "float16").is_float


def test_per_channel_statistics_along_any_axis(asym: Scheme) -> None:
    x = torch.arange(24.0).reshape(2, 3, 4) - 10
    for axis in (0, 1, 2, -1):
        qp = fed(x, granularity=PerChannel(axis)).qparams(asym, "int8")
        assert qp.scale is not None and tuple(qp.scale.shape) == (x.shape[axis],)
        assert qp.granularity == PerChannel(axis)


@pytest.mark.parametrize(
    ("batch", "error", "fragment"),
    [
        (torch.empty(0, 3), EmptyTensorError, "is empty (shape (0, 3))"),
        (torch.ones(3, dtype=torch.int64), InputDtypeError, "got torch.int64"),
        (torch.tensor([1e300], dtype=torch.float64), RangeOverflowError, "beyond float32's range"),
    ],
)
def test_bad_batches_are_refused_and_leave_no_trace(
    batch: torch.Tensor, error: type[Exception], fragment: str
) -> None:
    obs = fed(torch.tensor([1.0, 2.0]))
    with pytest.raises(error, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        obs.observe(batch, name="layer.input")
    assert (obs.batches, obs.elements, obs.lo.tolist()) == (1, 2, [1.0])  # type: ignore[union-attr]


def test_non_finite_batches_raise_with_name_count_and_index_or_are_skipped() -> None:
    bad = torch.tensor([[1.0, float("nan")], [float("inf"), 2.0]])
    obs = fed(torch.ones(2, 2))
    with pytest.raises(NonFiniteError, match=r"'act' holds 2 non-finite value\(s\).* at index \(0, 1\)"):
        obs.observe(bad, name="act")
    skipping = fed(torch.ones(2, 2), nonfinite="skip")
    skipping.observe(bad)
    assert (skipping.batches, skipping.skipped) == (1, 1)
    with pytest.raises(
        UnsupportedOptionError, match="does not accept nonfinite='ignore'; it accepts: raise, skip"
    ):
        RangeObserver(nonfinite="ignore")


def test_granularities_are_checked_when_created_and_on_every_batch() -> None:
    with pytest.raises(
        UnsupportedGranularityError, match=r"does not keep per-group\(axis=-1, group_size=2\)"
    ):
        RangeObserver(PerGroup(-1, 2))
    obs = fed(torch.ones(2, 3), granularity=PerChannel(-1))
    with pytest.raises(
        ObserverError, match=r"has 4 channels along axis -1 \(shape \(2, 4\)\); the observer has seen 3"
    ):
        obs.observe(torch.ones(2, 4))
    with pytest.raises(AxisError, match="axis 2 is out of range"):
        RangeObserver(PerChannel(2)).observe(torch.ones(3))
    with pytest.raises(UnsupportedGranularityError, match="is 0-d"):
        RangeObserver(PerChannel(0)).observe(torch.tensor(1.0))


def test_qparams_are_refused_when_they_cannot_be_right(asym: Scheme) -> None:
    with pytest.raises(ObserverError, match="has observed no batch; call observe"):
        RangeObserver().qparams(asym, "int8")
    skipped = RangeObserver(nonfinite="skip")
    skipped.observe(torch.tensor([float("nan")]))
    with pytest.raises(ObserverError, match=r"no batch \(1 skipped as non-finite\)"):
        skipped.qparams(asym, "int8")
    obs = fed(torch.ones(2, 3), granularity=PerChannel(-1))
    with pytest.raises(
        UnsupportedGranularityError, match=r"keeps per-channel\(axis=-1\) statistics; .* per-tensor"
    ):
        obs.qparams(asym, "int8", PerTensor())
    with pytest.raises(UnsupportedDtypeError, match="does not support dtype 'int4x'"):
        obs.qparams(_only_int8(asym), QuantDtype("int4x", 4, True, -8, 7, "int8"))

    class FromData(Scheme):
        name, version = "from-data", "1"

        def compute_scale_zero_point(self, x: Any, dtype: Any, granularity: Any, *, name: Any = None) -> Any:
            raise NotImplementedError

    with pytest.raises(UnsupportedOptionError, match="computes qparams from the tensor itself"):
        obs.qparams(FromData(), "int8")


def _only_int8(scheme: Scheme) -> Scheme:
    import dataclasses

    narrowed = scheme.configure()
    narrowed.capabilities = dataclasses.replace(scheme.capabilities, dtypes=("int8",))
    return narrowed


def test_merge_state_dict_and_reset(asym: Scheme) -> None:
    a, b = fed(torch.tensor([1.0, 2.0])), fed(torch.tensor([-4.0]), torch.tensor([9.0]))
    a.merge(b)
    assert (a.batches, a.elements, a.lo.tolist(), a.hi.tolist()) == (3, 4, [-4.0], [9.0])  # type: ignore[union-attr]
    buffer = io.BytesIO()
    torch.save(a.state_dict(), buffer)
    buffer.seek(0)
    loaded = RangeObserver()
    loaded.load_state_dict(torch.load(buffer, weights_only=True))
    assert loaded.qparams(asym, "int8").equals(a.qparams(asym, "int8")) and loaded.batches == 3
    a.reset()
    assert (a.batches, a.elements, a.lo) == (0, 0, None)


def test_merges_and_states_of_another_kind_or_config_are_refused() -> None:
    class Other(RangeObserver):
        name = "test-other"

    with pytest.raises(
        ObserverError, match=r"cannot merge observer 'test-other' \(Other\) into observer 'test-range'"
    ):
        fed(torch.ones(2)).merge(Other())
    with pytest.raises(
        ObserverError, match=r"other options than this 'test-range' observer \(shift: 1.0 vs 0.0\)"
    ):
        fed(torch.ones(2)).merge(RangeObserver(shift=1.0))
    with pytest.raises(ObserverError, match="cannot merge observers that saw 3 and 2 channels"):
        fed(torch.ones(3), granularity=PerChannel(0)).merge(fed(torch.ones(2), granularity=PerChannel(0)))
    state = fed(torch.ones(2)).state_dict()
    with pytest.raises(ObserverError, match="the saved state is of observer 'test-other', not 'test-range'"):
        RangeObserver().load_state_dict({**state, "observer": "test-other"})
    with pytest.raises(
        ObserverError, match=r"keeps per-channel\(axis=0\) statistics; this observer keeps per-tensor"
    ):
        RangeObserver().load_state_dict({**state, "granularity": PerChannel(0).to_dict()})
    with pytest.raises(ObserverError, match="format version 2 is not one this mono-quant-core reads"):
        RangeObserver().load_state_dict({**state, "format_version": 2})
    with pytest.raises(ObserverError, match="missing the key 'batches'"):
        RangeObserver().load_state_dict({k: v for k, v in state.items() if k != "batches"})


def test_a_broken_observer_is_reported_as_the_plugin_s_bug(asym: Scheme) -> None:
    class Broken(RangeObserver):
        name = "test-broken"

        def compute_range(self, dtype: QuantDtype, scheme: Scheme) -> tuple[torch.Tensor, torch.Tensor]:
            return torch.tensor([float("nan")]), torch.tensor([1.0], dtype=torch.float64)

    obs = Broken()
    obs.observe(torch.ones(3))
    with pytest.raises(
        ObserverContractError, match=r"'test-broken' .* broke the observer contract in compute_range"
    ) as info:
        obs.qparams(asym, "int8")
    assert "hi must be float32 of shape ()" in str(info.value) and "lo must be float32 of shape ()" in str(
        info.value
    )


def test_describe_is_json() -> None:
    described = fed(torch.ones(2), granularity=PerChannel(-1)).describe()
    assert json.loads(json.dumps(described))["capabilities"] == ObserverCapabilities().to_dict()


def test_unknown_observer_names_what_is_installed() -> None:
    with pytest.raises(
        UnknownObserverError, match=r"'no-such' is not an installed observer\..*Installed observers"
    ):
        get_observer("no-such")


# ---- the mono_quant_observers hook, through a real entry point ------------------------------


PLUGIN = """
import torch
from mono_quant.core import Observer, hookimpl

class Good(Observer):
    name, version = "mqtest-good-observer", "0.0.1"

    def __init__(self, granularity=None, *, nonfinite="raise", shift=0.0):
        super().__init__(granularity, nonfinite=nonfinite, options={"shift": shift})

    def reset_state(self):
        self.hi = None

    def update(self, rows):
        self.hi = rows.amax(dim=1) if self.hi is None else torch.max(self.hi, rows.amax(dim=1))

    def merge_state(self, other):
        self.hi = other.hi if self.hi is None else torch.max(self.hi, other.hi)

    def export_state(self):
        return {"hi": self.hi}

    def import_state(self, state):
        self.hi = state["hi"]

    def compute_range(self, dtype, scheme):
        return -self.hi.reshape(()), self.hi.reshape(())

@hookimpl
def mono_quant_observers():
    return [Good]
"""

BROKEN = """
from mono_quant.core import hookimpl
from mqtest_observer_good import Good

@hookimpl
def mono_quant_observers():
    return [Good()]  # an instance: its state would be shared by every user
"""


def _dist(root: Path, name: str, module: str, source: str) -> None:
    (root / f"{module}.py").write_text(textwrap.dedent(source))
    info = root / f"{name.replace('-', '_')}-0.0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.0.1\n")
    (info / "entry_points.txt").write_text(f"[mono_quant]\nobs = {module}\n")


def test_observer_plugins_load_isolated_and_are_listed(tmp_path: Path) -> None:
    _dist(tmp_path, "mqtest-observer-good", "mqtest_observer_good", PLUGIN)
    _dist(tmp_path, "mqtest-observer-broken", "mqtest_observer_broken", BROKEN)
    code = textwrap.dedent(
        """
        import json, warnings
        import mono_quant.core as mq
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            report = mq.plugin_report()
        obs = mq.get_observer("mqtest-good-observer", shift=2.0)
        try:
            mq.get_observer("mqtest-good-observer", bogus=1)
        except mq.UnsupportedOptionError as exc:
            option_error = str(exc)
        print(json.dumps({
            "plugins": {p.distribution: p.to_dict() for p in report.plugins},
            "observers": mq.list_observers(),
            "distribution": obs.distribution,
            "options": obs.options,
            "option_error": option_error,
            "warnings": [str(w.message) for w in caught],
        }))
        """
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("MONO_QUANT_")}
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), env.get("PYTHONPATH", "")])
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=False)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    good, broken = out["plugins"]["mqtest-observer-good"], out["plugins"]["mqtest-observer-broken"]
    assert good["status"] == "loaded" and good["observers"] == ["mqtest-good-observer"]
    assert "mqtest-good-observer" in out["observers"] and out["distribution"] == "mqtest-observer-good"
    assert out["options"] == {"shift": 2.0}
    assert "does not take option(s) bogus; it takes: shift" in out["option_error"]
    assert broken["status"] == "broken" and broken["observers"] == []
    assert "must return Observer subclasses (classes: each user gets a fresh observer)" in broken["error"]
    assert any("mqtest-observer-broken" in w for w in out["warnings"])


DUPLICATE = """
from mono_quant.core import hookimpl
from mqtest_observer_good import Good

class Twin(Good):
    version = "9.9.9"

@hookimpl
def mono_quant_observers():
    return [Twin]
"""


def test_two_plugins_with_one_observer_name_make_it_ambiguous_naming_both(tmp_path: Path) -> None:
    _dist(tmp_path, "mqtest-observer-good", "mqtest_observer_good", PLUGIN)
    _dist(tmp_path, "mqtest-observer-twin", "mqtest_observer_twin", DUPLICATE)
    code = textwrap.dedent(
        """
        import json, warnings
        import mono_quant.core as mq
        warnings.simplefilter("ignore")
        try:
            mq.get_observer("mqtest-good-observer")
        except mq.RegistryConflictError as exc:
            error = str(exc)
        print(json.dumps({"error": error, "conflicts": list(mq.plugin_report().conflicts)}))
        """
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("MONO_QUANT_")}
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), env.get("PYTHONPATH", "")])
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=False)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert "mqtest-observer-good and mqtest-observer-twin" in out["error"]
    assert "MONO_QUANT_DISABLE_PLUGINS" in out["error"]
    assert any("observer 'mqtest-good-observer'" in c for c in out["conflicts"])
