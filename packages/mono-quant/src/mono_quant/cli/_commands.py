"""The commands of ``mono-quant``: each turns parsed arguments into one call of the Python API.

Heavy modules (torch, the API) are imported inside each command, so that
``--help`` and usage errors never pay for them.
"""

from __future__ import annotations

import argparse
import json
from typing import TextIO

__all__ = ["calibrate", "dequantize", "export_onnx", "inspect", "merge", "plugins", "quantize", "verify"]


def plugins(args: argparse.Namespace, out: TextIO) -> int:
    from mono_quant.core import plugin_report

    report = plugin_report()
    if args.json:
        out.write(json.dumps(report.to_dict(), indent=2) + "\n")
        return 0
    for rec in report.plugins:
        line = f"{rec.distribution} {rec.version} [{rec.name}]: {rec.status}"
        if rec.schemes:
            line += f"; schemes: {', '.join(rec.schemes)}"
        if rec.dtypes:
            line += f"; dtypes: {', '.join(rec.dtypes)}"
        if rec.observers:
            line += f"; observers: {', '.join(rec.observers)}"
        if rec.error:
            line += f"; error: {' '.join(rec.error.split())}"
        out.write(line + "\n")
    for conflict in report.conflicts:
        out.write(f"conflict: {conflict}\n")
    return 0


def quantize(args: argparse.Namespace, out: TextIO) -> int:
    from mono_quant.cli._api import quantize_checkpoint
    from mono_quant.cli._progress import progress_wanted

    report = quantize_checkpoint(
        args.input,
        args.output,
        scheme=args.scheme,
        dtype=args.dtype,
        granularity=args.granularity,
        axis=args.axis,
        group_size=args.group_size,
        profile=args.profile,
        include=args.include,
        exclude=args.exclude,
        format=args.format,
        nonfinite=args.nonfinite,
        nondivisible=args.nondivisible,
        sqnr_threshold=args.sqnr_threshold,
        force=args.force,
        report=args.report,
        config=args.config,
        num_shards=args.num_shards,
        shard_index=args.shard_index,
        jobs=args.jobs,
        threads=args.threads,
        activations=args.activations,
        progress=progress_wanted(args.quiet),
    )
    if not args.quiet:
        out.write(report.render(all_tensors=args.all_tensors) + "\n")
        out.write(f"wrote {args.output}" + (f" and {args.report}" if args.report else "") + "\n")
    return 0


def dequantize(args: argparse.Namespace, out: TextIO) -> int:
    import torch

    from mono_quant.cli._load import dequantize_checkpoint
    from mono_quant.cli._progress import progress_wanted

    dtype = None if args.dtype == "original" else getattr(torch, args.dtype)
    path = dequantize_checkpoint(
        args.input, args.output, dtype=dtype, force=args.force, progress=progress_wanted(args.quiet)
    )
    if not args.quiet:
        out.write(f"wrote {path}\n")
    return 0


def calibrate(args: argparse.Namespace, out: TextIO) -> int:
    from mono_quant.cli._calibration import calibrate_model_folder
    from mono_quant.cli._progress import progress_wanted

    result = calibrate_model_folder(
        args.input,
        args.data,
        args.output,
        observer=args.observer,
        scheme=args.scheme,
        dtype=args.dtype,
        batch_size=args.batch_size,
        max_length=args.max_length,
        max_samples=args.max_samples,
        force=args.force,
        progress=progress_wanted(args.quiet),
    )
    if not args.quiet:
        out.write(
            f"calibrated {len(result.inputs)} activations on {result.batches} batches "
            f"in {result.seconds:.1f} s"
            + (f"; never called: {', '.join(result.not_called)}" if result.not_called else "")
            + f"\nwrote {args.output}\n"
        )
    return 0


def export_onnx(args: argparse.Namespace, out: TextIO) -> int:
    from mono_quant.cli._calibration import export_onnx_folder

    report = export_onnx_folder(
        args.input,
        args.output,
        activations=args.activations,
        scheme=args.scheme,
        dtype=args.dtype,
        exclude=tuple(args.exclude),
        opset=args.opset,
        force=args.force,
        store_int8_as=args.store_int8_as,
    )
    if not args.quiet:
        out.write((json.dumps(report.to_dict(), indent=2) if args.json else report.render()) + "\n")
    return 0


def merge(args: argparse.Namespace, out: TextIO) -> int:
    from mono_quant.cli._split import merge_index

    report = merge_index(args.output, force=args.force, report=args.report, keep_parts=args.keep_parts)
    if not args.quiet:
        out.write(report.render() + "\n")
        out.write(f"wrote {args.output}" + (f" and {args.report}" if args.report else "") + "\n")
    return 0


def verify(args: argparse.Namespace, out: TextIO) -> int:
    from mono_quant.cli._verify import render_json, verify_checkpoint

    try:
        report = verify_checkpoint(args.input, args.reference)
    except Exception as exc:
        found = getattr(exc, "report", None)
        if found is not None:  # a mismatch: show what was found, then the error
            out.write((render_json(found) if args.json else found.render()) + "\n")
        raise
    out.write((render_json(report) if args.json else report.render()) + "\n")
    return 0


def inspect(args: argparse.Namespace, out: TextIO) -> int:
    from mono_quant.cli._inspect import inspect_checkpoint, render_inspect

    info = inspect_checkpoint(args.input)
    out.write((json.dumps(info, indent=2) if args.json else render_inspect(info)) + "\n")
    return 0
