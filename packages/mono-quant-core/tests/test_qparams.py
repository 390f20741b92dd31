"""QParams: construction checks and lossless serialization."""

from __future__ import annotations

import pytest
import torch

from mono_quant.core import PerGroup, QParams, QParamsError, Scheme


def test_round_trip_through_a_plain_dict_is_exact(asym: Scheme) -> None:
    x = torch.randn(6, 64, generator=torch.Generator().manual_seed(0))
    qp = asym.configure(profile="torchao", nondivisible="pad").compute_qparams(x, "uint8", PerGroup(-1, 24))
    back = QParams.from_dict(qp.to_dict())
    assert back.equals(qp)
    assert back.granularity == PerGroup(1, 24)  # stored normalized
    assert (back.scheme, back.profile, back.compute_dtype) == ("core-test-asym", "torchao", "input")


def test_round_trip_through_tensors_and_string_metadata(asym: Scheme) -> None:
    qp = asym.compute_qparams(torch.randn(4, 4), "int8")
    meta = qp.metadata()
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in meta.items())
    assert QParams.from_tensors(qp.tensors(), meta).equals(qp)


def test_float_target_qparams_have_no_tensors() -> None:
    qp = QParams(None, None, dtype="bfloat16")
    assert qp.tensors() == {} and QParams.from_dict(qp.to_dict()).equals(qp)


def test_a_newer_format_version_is_refused() -> None:
    data = QParams(None, None, dtype="float16").to_dict()
    data["format_version"] = "99"
    with pytest.raises(QParamsError, match="format version 99 is newer"):
        QParams.from_dict(data)


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"scale": torch.tensor(1.0), "zero_point": None}, "both be tensors"),
        (
            {
                "scale": torch.tensor(1.0, dtype=torch.float64),
                "zero_point": torch.tensor(0, dtype=torch.int32),
            },
            "scale must be float32",
        ),
        ({"scale": torch.tensor(1.0), "zero_point": torch.tensor(0)}, "zero_point must be int32"),
        ({"scale": torch.ones(2), "zero_point": torch.zeros(3, dtype=torch.int32)}, "same shape"),
    ],
)
def test_inconsistent_qparams_are_refused(kwargs: dict[str, torch.Tensor | None], fragment: str) -> None:
    with pytest.raises(QParamsError, match=fragment):
        QParams(dtype="int8", **kwargs)  # type: ignore[arg-type]


def test_missing_keys_are_named() -> None:
    with pytest.raises(QParamsError, match="missing the key 'dtype'"):
        QParams.from_dict({"granularity": '{"kind": "per_tensor"}'})


def test_equals_compares_tensors_bit_for_bit() -> None:
    a = QParams(torch.tensor(0.1), torch.tensor(0, dtype=torch.int32), dtype="int8")
    b = QParams(
        torch.tensor(0.1).nextafter(torch.tensor(1.0)), torch.tensor(0, dtype=torch.int32), dtype="int8"
    )
    assert a.equals(a) and not a.equals(b)
