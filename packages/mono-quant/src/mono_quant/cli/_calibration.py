"""``mono-quant calibrate``: activation qparams of a Hugging Face text model from a file of texts."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from mono_quant.cli._atomic import atomic_output
from mono_quant.cli._errors import InputError, UsageError
from mono_quant.cli._model import read_config
from mono_quant.cli._options import option
from mono_quant.cli._verify import _quiet

__all__ = ["calibrate_model_folder", "export_onnx_folder", "load_text_model", "read_texts"]


def read_texts(path: Path) -> list[str]:
    r"""The calibration texts of ``path``.

    One per non-empty line of a ``.txt``, or the ``"text"`` of each ``.jsonl``
    line (a line may also be a JSON string).

    >>> import tempfile
    >>> p = Path(tempfile.mkdtemp()) / "t.jsonl"
    >>> _ = p.write_text('{"text": "a cat"}\n"a dog"\n\n')
    >>> read_texts(p)
    ['a cat', 'a dog']
    """
    if not path.is_file():
        raise InputError(f"the calibration data {path} does not exist.")
    lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if path.suffix != ".jsonl":
        texts = lines
    else:
        texts = []
        for n, line in enumerate(lines, 1):
            try:
                item = json.loads(line)
            except ValueError as exc:
                raise InputError(f"{path}:{n} is not JSON ({exc}).") from exc
            text = item.get("text") if isinstance(item, dict) else item
            if not isinstance(text, str):
                raise InputError(f'{path}:{n} has no "text" string; got {type(text).__name__}.')
            texts.append(text)
    if not texts:
        raise InputError(f"{path} holds no text to calibrate with.")
    return texts


def load_text_model(folder: Path) -> tuple[torch.nn.Module, Any]:
    """A Hugging Face model folder's model (its architecture, float weights, eval mode) and tokenizer."""
    try:
        import transformers
    except ImportError as exc:
        raise UsageError(
            "this command runs the model with transformers: pip install mono-quant[transformers]."
        ) from exc
    if not (folder / "config.json").is_file():
        raise InputError(f"{folder} is not a model folder (no config.json).")
    config = read_config(folder / "config.json")
    arch = (config.get("architectures") or ["AutoModel"])[0]
    cls = getattr(transformers, str(arch), transformers.AutoModel)
    with _quiet():
        tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
        model = cls.from_pretrained(folder).eval()
    return model, tokenizer


def export_onnx_folder(
    model_dir: str | Path,
    output: str | Path,
    *,
    activations: str | Path | None = None,
    scheme: str = "symmetric",
    dtype: str = "int8",
    exclude: tuple[str, ...] = (),
    opset: int = 18,
    force: bool = False,
    store_int8_as: str = "uint8",
) -> Any:
    """``mono-quant export-onnx``: a model folder as a QDQ ONNX file (:func:`~mono_quant.cli.export_onnx`).

    ``activations`` is a file ``mono-quant calibrate`` wrote (weights only without it).
    The example inputs are two tokenized sentences of different lengths; every axis
    stays dynamic. Returns the :class:`~mono_quant.cli.OnnxExport` report.
    """
    from mono_quant.cli._onnx import export_onnx
    from mono_quant.cli._prepare import read_activations

    model, tokenizer = load_text_model(Path(model_dir))
    inputs = read_activations(Path(activations)) if activations is not None else None
    example = dict(
        tokenizer(["A short one.", "A somewhat longer example sentence."], padding=True, return_tensors="pt")
    )
    with torch.inference_mode():
        names = list(model(**example).keys())
    return export_onnx(
        model, example, output, activations=inputs, scheme=scheme, dtype=dtype, exclude=exclude,
        output_names=names, opset=opset, force=force, store_int8_as=store_int8_as,
    )  # fmt: skip


def calibrate_model_folder(
    model_dir: str | Path,
    data: str | Path,
    output: str | Path,
    *,
    observer: str = "minmax",
    scheme: str = "symmetric",
    dtype: str = "int8",
    batch_size: int = 8,
    max_length: int = 128,
    max_samples: int | None = None,
    exclude: tuple[str, ...] = ("lm_head",),
    force: bool = False,
    progress: bool = False,
) -> Any:
    """Calibrate the input activations of a model folder's ``Linear`` modules and write them to ``output``.

    The model and its tokenizer are loaded with transformers from ``model_dir``;
    the texts (:func:`read_texts`) run in batches of ``batch_size`` tokenized to
    at most ``max_length`` tokens, padding left out of the statistics. The result
    (``<module>.input_scale``/``input_zero_point`` and the plan as metadata) is
    written atomically; ``mono-quant quantize --activations FILE`` turns it into a
    W8A8 checkpoint. Returns the :class:`~mono_quant.observers.CalibrationResult`.
    """
    from safetensors.torch import save_file

    from mono_quant.core import PerTensor
    from mono_quant.observers import CalibrationPlan, calibrate

    folder = Path(model_dir)
    texts = read_texts(Path(data))[:max_samples]
    if batch_size < 1 or max_length < 1:
        raise UsageError(
            f"{option('batch_size', None)} and {option('max_length', None)} must be at least 1; "
            f"got {batch_size} and {max_length}."
        )
    model, tokenizer = load_text_model(folder)
    plan = CalibrationPlan(
        observer=observer,
        scheme=scheme,
        dtype=dtype,
        granularity=PerTensor(),
        exclude=exclude,
        padding_mask="attention_mask",
    )

    def batches() -> Iterator[dict[str, torch.Tensor]]:
        for start in range(0, len(texts), batch_size):
            chunk = texts[start : start + batch_size]
            yield dict(
                tokenizer(chunk, padding=True, truncation=True, max_length=max_length, return_tensors="pt")
            )

    total = -(-len(texts) // batch_size)
    with atomic_output(Path(output), force=force) as tmp:
        result = calibrate(model, batches(), plan, progress=None if progress else False, total=total)
        save_file(result.tensors(), str(tmp), metadata=result.metadata())
    return result
