"""``mono-quant verify``: load an output with the installed runtime and check what it decodes to."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import math
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from mono_quant.cli._errors import InputError, RefusedError, UsageError
from mono_quant.cli._formats import compressed_tensors as ct
from mono_quant.cli._model import read_config
from mono_quant.cli._safetensors import read_safetensors
from mono_quant.cli._tensor import sqnr_db

__all__ = ["VerifyReport", "transformers_asymmetric_regression", "verify_checkpoint"]

#: transformers versions known to load asymmetric compressed-tensors checkpoints on their default path.
_ASYMMETRIC_OK_UP_TO = (5, 17)


def transformers_asymmetric_regression(version: str | None = None) -> bool:
    """Whether this transformers (default: installed) fails on asymmetric compressed-tensors checkpoints.

    Its default load path (5.24 is known affected, 5.17 known good) reports a
    ``weight_zero_point`` size mismatch and refuses the checkpoint; loading with
    ``CompressedTensorsConfig(dequantize=True)`` works. A test loads
    llm-compressor's own asymmetric checkpoint to notice when this is fixed.

    >>> transformers_asymmetric_regression("5.17.0"), transformers_asymmetric_regression("5.24.0")
    (False, True)
    """
    if version is None:
        try:
            import transformers
        except ImportError:
            return False
        version = str(transformers.__version__)
    parts = tuple(int(p) for p in version.split(".")[:2] if p.isdigit())
    return len(parts) == 2 and parts > _ASYMMETRIC_OK_UP_TO


@dataclass
class VerifyReport:
    """What ``verify`` found: per-module comparison rows, loads tried, and the output similarity."""

    path: str
    runtime: str
    rows: list[dict[str, Any]] = field(default_factory=list)
    loads: dict[str, str] = field(default_factory=dict)
    cosine: dict[str, float] | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def mismatches(self) -> int:
        """Modules whose runtime weight (either load path) differs in any bit from mono-quant's dequantize."""
        return sum(1 for r in self.rows if not r["equal"] or r.get("equal_default_path") is False)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "path": self.path,
            "runtime": self.runtime,
            "loads": self.loads,
            "modules": self.rows,
            "mismatches": self.mismatches,
            "output_cosine": self.cosine,
            "notes": self.notes,
        }

    def render(self) -> str:
        """The terminal view."""
        lines = [f"{self.path}: {len(self.rows)} quantized modules, loaded with {self.runtime}"]
        lines += [f"load ({how}): {result}" for how, result in self.loads.items()]
        for r in self.rows:
            sq = "" if r.get("sqnr_db") is None else f"  SQNR {r['sqnr_db']:.2f} dB"
            default = {True: "equal", False: "DIFFERENT", None: "-"}[r.get("equal_default_path")]
            lines.append(
                f"  {r['name']:<56} dequantize=True: {'equal' if r['equal'] else 'DIFFERENT':<9} "
                f"default path: {default:<9}{sq}"
            )
        lines.append(
            f"weights: {len(self.rows) - self.mismatches}/{len(self.rows)} equal to mono-quant's dequantize, "
            f"bit for bit"
        )
        if self.cosine is not None:
            lines.append(
                f"output cosine vs the reference: mean {self.cosine['mean']:.6f}, "
                f"min {self.cosine['min']:.6f} ({self.cosine['inputs']} fixed inputs)"
            )
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines)


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    logger = logging.getLogger("transformers")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


def _model_class(config: dict[str, Any]) -> Any:
    import transformers

    arch = (config.get("architectures") or [None])[0]
    cls = getattr(transformers, str(arch), None) if arch else None
    return cls if cls is not None else transformers.AutoModel


def _stored(folder: Path) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    for f in sorted(folder.glob("*.safetensors")):
        with read_safetensors(f) as st:
            for k in st.keys():  # noqa: SIM118 - a safetensors handle, not a dict
                out[k] = st.get_tensor(k)
    return out


def _fixed_inputs(vocab: int) -> torch.Tensor:
    """Four sequences of 32 token ids, the same on every machine (no tokenizer needed)."""
    ids = [[(7919 * i + 104729 * j + 13) % max(vocab, 2) for j in range(32)] for i in range(4)]
    return torch.tensor(ids, dtype=torch.long)


def _outputs(model: Any, ids: torch.Tensor) -> torch.Tensor:
    with torch.inference_mode():
        out = model(input_ids=ids, attention_mask=torch.ones_like(ids))
    value = getattr(out, "logits", None)
    if value is None:
        value = out.last_hidden_state
    result: torch.Tensor = value.float().reshape(-1, value.shape[-1])
    return result


def verify_checkpoint(path: str | Path, reference: str | Path | None = None) -> VerifyReport:
    """Load the compressed-tensors folder ``path`` with transformers; compare it with mono-quant's decoding.

    Every quantized module's weight, as transformers (with compressed-tensors)
    decompresses it, must equal mono-quant's dequantize of the stored codes bit
    for bit; a difference raises :class:`RefusedError` after the report is built
    (``report`` attribute). The default load path is tried too and its outcome
    reported. With ``reference`` (the original float model folder), each module
    gets its SQNR against the original weight, and the two models' outputs on
    four fixed token sequences are compared by cosine similarity.

    >>> import tempfile, transformers
    >>> from mono_quant.cli import quantize_checkpoint
    >>> d = Path(tempfile.mkdtemp())
    >>> config = transformers.LlamaConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=1,
    ...                                   num_attention_heads=2, num_key_value_heads=1, vocab_size=128)
    >>> transformers.LlamaForCausalLM(config).save_pretrained(d / "model")
    >>> _ = quantize_checkpoint(d / "model", d / "ct", scheme="int4-symmetric", group_size=64,
    ...                         format="compressed-tensors")
    >>> report = verify_checkpoint(d / "ct", reference=d / "model")
    >>> report.mismatches, len(report.rows), report.loads["default path"]
    (0, 7, 'loaded')
    """
    folder = Path(path)
    if not folder.is_dir() or not (folder / "config.json").is_file():
        if (folder / "mono-quant.config.json").is_file() or folder.suffix == ".safetensors":
            raise UsageError(
                f"{folder} is a mono-quant native checkpoint: no runtime loads it (by design). Verify a "
                f"--format compressed-tensors output, or read it back with mono-quant dequantize."
            )
        raise InputError(f"{folder} is not a model folder with a config.json.")
    config = read_config(folder / "config.json")
    qc = config.get("quantization_config") or {}
    if qc.get("quant_method") != "compressed-tensors":
        raise InputError(f"{folder}/config.json has no compressed-tensors quantization_config.")
    try:
        import transformers
        from transformers import CompressedTensorsConfig
    except ImportError as exc:
        raise UsageError(
            "verify loads the model with transformers and compressed-tensors: "
            "pip install transformers compressed-tensors."
        ) from exc
    report = VerifyReport(str(folder), f"transformers {transformers.__version__}")
    cls = _model_class(config)
    stored = _stored(folder)
    asymmetric = any(k.endswith(".weight_zero_point") for k in stored)
    default_state: dict[str, torch.Tensor] | None = None
    with _quiet():
        try:
            default_state = cls.from_pretrained(folder).state_dict()
            report.loads["default path"] = "loaded"
        except Exception as exc:  # noqa: BLE001 - the outcome is reported, whatever it is
            report.loads["default path"] = f"failed: {type(exc).__name__}: {' '.join(str(exc).split())[:160]}"
        model = cls.from_pretrained(folder, quantization_config=CompressedTensorsConfig(dequantize=True))
    report.loads["dequantize=True"] = "loaded"
    if asymmetric and transformers_asymmetric_regression():
        report.notes.append(
            f"transformers {transformers.__version__} cannot load asymmetric compressed-tensors checkpoints "
            f"on its default path (a regression after 5.17); load with "
            f"CompressedTensorsConfig(dequantize=True)."
        )
    weights = model.state_dict()
    groups = list(qc.get("config_groups", {}).values())
    args = groups[0]["weights"] if len(groups) == 1 else None
    ref_model = None
    if reference is not None:
        with _quiet():
            ref_model = _model_class(read_config(Path(reference) / "config.json")).from_pretrained(reference)
        ref_weights = ref_model.state_dict()
    for key in sorted(k for k in stored if k.endswith(".weight_scale")):
        name = key.removesuffix("_scale")
        module_args = args or next(
            g["weights"] for g in groups if name.removesuffix(".weight") in g.get("targets", [])
        )
        runtime = weights.get(name)
        ours = ct.decode(name, stored, module_args)
        row: dict[str, Any] = {"name": name, "equal": False, "equal_default_path": None}
        if runtime is not None:
            row["equal"] = bool(torch.equal(runtime, ours.to(runtime.dtype)))
            if default_state is not None:
                # The default path keeps the module compressed; decode what it holds (its scales are in
                # the model's dtype there) the way its forward does.
                theirs = ct.decode(name, default_state, module_args)
                row["equal_default_path"] = bool(
                    torch.equal(theirs.to(runtime.dtype), ours.to(runtime.dtype))
                )
        if ref_model is not None and runtime is not None and name in ref_weights:
            x = ref_weights[name].double()
            err = (x - runtime.double()).pow(2).sum()
            row["sqnr_db"] = sqnr_db(float(x.pow(2).sum()), float(err))
        report.rows.append(row)
    if ref_model is not None:
        ids = _fixed_inputs(int(config.get("vocab_size", 2)))
        a, b = _outputs(ref_model, ids), _outputs(model, ids)
        cos = torch.nn.functional.cosine_similarity(a, b, dim=-1)
        report.cosine = {"mean": float(cos.mean()), "min": float(cos.min()), "inputs": int(ids.shape[0])}
    if report.mismatches:
        first = next(r for r in report.rows if not r["equal"] or r["equal_default_path"] is False)
        where = "its default load path" if first["equal"] else "dequantize=True"
        error = RefusedError(
            f"{report.mismatches} of {len(report.rows)} quantized modules of {folder} load as other weights "
            f"than mono-quant's dequantize (the first: {first['name']}, through {where})."
        )
        error.report = report  # type: ignore[attr-defined]
        raise error
    return report


def render_json(report: VerifyReport) -> str:
    """``report`` as indented JSON, with non-finite numbers as strings."""

    def clean(v: Any) -> Any:
        if isinstance(v, float) and not math.isfinite(v):
            return "inf" if v > 0 else "-inf"
        if isinstance(v, dict):
            return {k: clean(x) for k, x in v.items()}
        if isinstance(v, list):
            return [clean(x) for x in v]
        return v

    return json.dumps(clean(report.to_dict()), indent=2)
