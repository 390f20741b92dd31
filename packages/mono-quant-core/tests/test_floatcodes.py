"""Scaled float codes: the dtype data, core's rounding against torch's float8 casts, ops by QParams."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from mono_quant.core import (
    DEFAULT_PROFILE,
    Capabilities,
    MinMaxScheme,
    NonFiniteError,
    Packing,
    PerChannel,
    PerGroup,
    PerTensor,
    QParams,
    QParamsError,
    QuantDtype,
    Scheme,
    SchemeContractError,
    UnsupportedDtypeError,
    decode_float_codes,
    dequantize,
    encode_float_codes,
    float_code_qparams,
    float_code_values,
    float_format_max,
    get_dtype,
    quantization_error,
    quantize,
    quantize_with_error,
    temporary_dtypes,
)
from mono_quant.core._builtins import FLOAT8_E4M3FN, FLOAT8_E5M2
from mono_quant.core._profile import resolve_profile

FORMATS = {"float8_e4m3fn": (4, 3, 448.0, False), "float8_e5m2": (5, 2, 57344.0, True)}


def twin(name: str) -> QuantDtype:
    """The same format held as bit patterns in uint8: core's own rounding instead of torch's cast."""
    e, m, limit, inf = FORMATS[name]
    return QuantDtype(
        f"{name}-bits", 8, True, None, None, "uint8", kind="float_code",
        exponent_bits=e, mantissa_bits=m, max_value=limit, has_inf=inf, has_nan=True,
    )  # fmt: skip


E3M2 = QuantDtype(
    "fp6-e3m2", 6, True, None, None, "uint8",
    kind="float_code", exponent_bits=3, mantissa_bits=2, max_value=28.0,
)  # fmt: skip


# --- the dtype data ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(FORMATS))
def test_core_registers_the_fp8_formats_as_data(name: str) -> None:
    d = get_dtype(name)
    e, m, limit, inf = FORMATS[name]
    assert d.is_float_code and not d.is_float and d.kind == "float_code" and d.affine
    assert (d.bits, d.signed, d.qmin, d.qmax, d.levels) == (8, True, None, None, 0)
    assert (d.exponent_bits, d.mantissa_bits, d.max_value, d.has_inf, d.has_nan) == (e, m, limit, inf, True)
    assert d.torch_dtype == getattr(torch, name) and d.packing is None and d.scale_dtype is None
    assert d.max_value == torch.finfo(d.torch_dtype).max == float_format_max(e, m, has_inf=inf, has_nan=True)
    assert QuantDtype.from_dict(d.to_dict()) == d
    assert d in (FLOAT8_E4M3FN, FLOAT8_E5M2)


def test_integer_and_cast_metadata_is_what_it_was_and_old_metadata_reads() -> None:
    legacy = {
        "name",
        "bits",
        "signed",
        "qmin",
        "qmax",
        "code_dtype",
        "kind",
        "packing",
        "description",
        "affine",
    }
    for name in ("int8", "uint8", "int16", "int32", "float16", "bfloat16"):
        data = get_dtype(name).to_dict()
        assert set(data) == legacy, name
        assert QuantDtype.from_dict(data) == get_dtype(name)
    assert set(get_dtype("float8_e4m3fn").to_dict()) > legacy


@pytest.mark.parametrize(
    ("changes", "fragment"),
    [
        ({"bits": 7}, "bits (7) must be exponent_bits + mantissa_bits + 1 (the sign bit) = 8"),
        ({"max_value": 480.0}, "max_value must be the format's largest finite value 448.0, got 480.0"),
        ({"has_nan": False}, "max_value must be the format's largest finite value 480.0"),
        ({"has_inf": True, "has_nan": False}, "has_inf implies has_nan"),
        ({"code_dtype": "float8_e5m2"}, "code_dtype 'float8_e5m2' holds signed E5M2"),
        ({"code_dtype": "int8"}, "float codes are held as a torch float8 dtype"),
        ({"code_dtype": "float8_e8m0fnu"}, "float codes are held as a torch float8 dtype"),
        ({"qmin": -1, "qmax": 1}, "a float code dtype has no qmin/qmax"),
        ({"exponent_bits": 0}, "exponent_bits must be an int >= 1"),
        ({"affine": False}, "a float code dtype cannot be a codebook"),
        (
            {"scale_dtype": "float16"},
            "scale_dtype must be None or one of ['float8_e8m0fnu', 'float8_e4m3fn']",
        ),
        ({"packing": Packing(8, 1).to_dict()}, "only bit patterns in 'uint8' are packed"),
    ],
)
def test_an_inconsistent_float_format_is_refused_with_the_reason(
    changes: dict[str, object], fragment: str
) -> None:
    data = {**FLOAT8_E4M3FN.to_dict(), "name": "bad", **changes}
    with pytest.raises(ValueError, match="invalid quant dtype 'bad'") as info:
        QuantDtype.from_dict(data)
    assert fragment in str(info.value)


def test_the_format_max_follows_the_inf_and_nan_conventions() -> None:
    assert float_format_max(2, 1, has_inf=False, has_nan=False) == 6.0  # E2M1: every code a number
    assert float_format_max(3, 2, has_inf=False, has_nan=False) == 28.0  # FP6 E3M2
    assert float_format_max(2, 3, has_inf=False, has_nan=False) == 7.5  # FP6 E2M3
    assert float_format_max(5, 10, has_inf=True, has_nan=True) == torch.finfo(torch.float16).max


# --- rounding ---------------------------------------------------------------------------------


def edge_values(name: str) -> torch.Tensor:
    """Every value of the format, every midpoint, a float32 ulp either side, beyond max, subnormals."""
    values = float_code_values(get_dtype(name)).double()
    mids = (values[1:] + values[:-1]) / 2
    pts = torch.cat([values, mids, values[1:9] / 3, torch.tensor([1e6, 3.0e38, 1e-30, 2.0**-149])]).float()
    near = torch.cat([torch.nextafter(pts, torch.tensor(0.0)), torch.nextafter(pts, torch.tensor(1e39))])
    both = torch.cat([pts, near])
    return torch.cat([both, -both])


@pytest.mark.parametrize("name", sorted(FORMATS))
def test_core_rounding_equals_torchs_float8_cast_bit_for_bit(name: str) -> None:
    y = edge_values(name)
    d = get_dtype(name)
    cast = y.clamp(-d.max_value, d.max_value).to(d.torch_dtype).view(torch.uint8)  # type: ignore[arg-type]
    ours = encode_float_codes(y, twin(name))
    assert int((ours != cast).sum()) == 0
    assert torch.equal(encode_float_codes(y, d).view(torch.uint8), cast)


@given(st.lists(st.floats(allow_nan=False, allow_infinity=False, width=32), min_size=1, max_size=32))
def test_any_float32_rounds_as_torchs_cast(values: list[float]) -> None:
    y = torch.tensor(values, dtype=torch.float32)
    for name in FORMATS:
        d = get_dtype(name)
        codes = encode_float_codes(y, twin(name))
        assert torch.equal(codes, encode_float_codes(y, d).view(torch.uint8))
        back = decode_float_codes(codes, twin(name))
        assert bool(torch.isfinite(back).all())  # saturation, never inf or NaN from finite input


@pytest.mark.parametrize("name", sorted(FORMATS))
def test_every_code_decodes_as_torch_does(name: str) -> None:
    codes = torch.arange(256, dtype=torch.int64).to(torch.uint8)
    ours = decode_float_codes(codes, twin(name))
    theirs = codes.view(get_dtype(name).torch_dtype).to(torch.float32)
    same = (ours == theirs) | (torch.isnan(ours) & torch.isnan(theirs))
    assert bool(same.all()) and torch.equal(torch.signbit(ours), torch.signbit(theirs))


def test_ties_go_to_the_even_code_and_the_sign_of_zero_is_kept_unless_asked() -> None:
    e4m3 = get_dtype("float8_e4m3fn")
    # 1.0625 lies halfway between 1.0 (mantissa 000) and 1.125 (001); 1.1875 between 1.125 and 1.25 (010).
    assert encode_float_codes(torch.tensor([1.0625, 1.1875, -1.0625]), e4m3).tolist() == [1.0, 1.25, -1.0]
    # E4M3 subnormals are multiples of 2**-9; 2**-10 is a tie between 0 and 2**-9.
    assert encode_float_codes(torch.tensor([2.0**-10, 3 * 2.0**-10]), e4m3).tolist() == [0.0, 2.0**-8]
    zeros = torch.tensor([-0.0, 0.0, -1e-9])
    assert torch.signbit(encode_float_codes(zeros, e4m3).float()).tolist() == [True, False, True]
    plain = encode_float_codes(zeros, e4m3, negative_zero=False).float()
    assert torch.signbit(plain).tolist() == [False, False, True]


def test_a_custom_fp6_format_is_only_data() -> None:
    assert float_code_values(E3M2).tolist()[:6] == [0.0, 0.0625, 0.125, 0.1875, 0.25, 0.3125]
    assert float_code_values(E3M2).tolist()[-3:] == [20.0, 24.0, 28.0]
    codes = encode_float_codes(torch.tensor([30.0, -0.09375, 0.03125, 22.0]), E3M2)
    assert decode_float_codes(codes, E3M2).tolist() == [28.0, -0.125, 0.0, 24.0]  # saturate; ties to even
    assert codes.dtype == torch.uint8 and int(codes.max()) < 64


# --- qparams, quantize, dequantize --------------------------------------------------------------


def test_absmax_scale_is_floored_at_eps_or_replaced_when_zero() -> None:
    lo, hi = torch.tensor([-896.0, 0.0, 0.0]), torch.tensor([1.0, 0.0, 1e-9])
    e4m3 = get_dtype("float8_e4m3fn")
    scale, zp = float_code_qparams(lo, hi, e4m3, DEFAULT_PROFILE)
    eps = torch.finfo(torch.float32).eps
    assert scale.tolist() == [2.0, eps, eps] and zp.tolist() == [0, 0, 0] and zp.dtype == torch.int32
    ct = resolve_profile("compressed-tensors")
    scale, _ = float_code_qparams(lo.bfloat16(), hi.bfloat16(), e4m3, ct)
    assert scale.tolist() == [
        2.0,
        torch.finfo(torch.bfloat16).eps,
        float(torch.tensor(1e-9).bfloat16() / 448),
    ]


class Fp8ForTests(MinMaxScheme):
    name, version = "core-test-fp8", "0"
    capabilities = Capabilities(dtypes=("float8_e4m3fn", "float8_e5m2"), default_dtype="float8_e4m3fn")

    def qparams_from_range(
        self, lo: torch.Tensor, hi: torch.Tensor, dtype: QuantDtype
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return float_code_qparams(lo, hi, dtype, self.profile)


@pytest.mark.parametrize("g", [PerTensor(), PerChannel(1), PerGroup(0, 2)], ids=str)
def test_qparams_alone_quantize_and_dequantize_through_core(g: PerTensor | PerChannel | PerGroup) -> None:
    x = torch.randn(4, 6, 5)
    qp = Fp8ForTests().compute_qparams(x, "float8_e5m2", g)
    again = QParams.from_dict(qp.to_dict())  # no scheme needed from here on
    codes = quantize(x, again)
    assert codes.dtype == torch.float8_e5m2 and torch.equal(quantize(x, again, pack=True), codes)
    assert codes.view(torch.uint8).equal(Fp8ForTests().quantize(x, qp).view(torch.uint8))
    values = dequantize(codes, again)
    assert torch.equal(values, Fp8ForTests().dequantize(codes, qp))
    assert dequantize(codes, again, dtype=torch.bfloat16).dtype == torch.bfloat16
    signal, noise = quantization_error(x, codes, again)
    assert math.isclose(noise, float(((x - values) ** 2).sum()), rel_tol=1e-5)
    _, _, energies = quantize_with_error(Fp8ForTests(), x, "float8_e5m2", g)
    assert energies == (signal, noise)
    with pytest.raises(QParamsError, match=r"shape=\(2, 3\) was given and 'float8_e5m2' is not packed"):
        dequantize(codes, again, shape=(2, 3))


def test_integer_schemes_do_not_take_float_codes_and_float_code_schemes_refuse_integers(asym: Scheme) -> None:
    assert not asym.supports_dtype(get_dtype("float8_e4m3fn"))
    with pytest.raises(UnsupportedDtypeError, match="every affine integer dtype"):
        asym.compute_qparams(torch.ones(3), "float8_e4m3fn")
    with pytest.raises(UnsupportedDtypeError, match="it supports: float8_e4m3fn, float8_e5m2"):
        Fp8ForTests().compute_qparams(torch.ones(3), "int8")


def test_non_finite_input_raises_in_qparams_and_in_quantize() -> None:
    x = torch.randn(2, 4)
    qp = Fp8ForTests().compute_qparams(x)
    x[1, 2] = math.inf
    with pytest.raises(NonFiniteError, match=r"'w' holds 1 non-finite value.*at index \(1, 2\)"):
        Fp8ForTests().compute_qparams(x, name="w")
    with pytest.raises(NonFiniteError, match="at index \\(1, 2\\)"):
        quantize(x, qp, name="w")


def test_a_float_code_scheme_must_give_a_zero_point_of_zero() -> None:
    class OffsetFp8(Fp8ForTests):
        def qparams_from_range(
            self, lo: torch.Tensor, hi: torch.Tensor, dtype: QuantDtype
        ) -> tuple[torch.Tensor, torch.Tensor]:
            scale, zp = float_code_qparams(lo, hi, dtype, self.profile)
            return scale, zp + 1

    with pytest.raises(SchemeContractError, match="zero_point must be 0 everywhere for float codes"):
        OffsetFp8().compute_qparams(torch.randn(4))


def two_level(rounding: str, tensor_scale: float) -> QParams:
    scale = torch.tensor([[2.0, 0.5]])
    zp = torch.zeros(1, 2, dtype=torch.int32)
    return QParams(
        scale, zp, "float8_e4m3fn", PerGroup(-1, 2), rounding=rounding,
        extra={"tensor_scale": tensor_scale.hex()},
    )  # fmt: skip


def test_a_tensor_scale_combines_by_the_profiles_convention() -> None:
    codes = torch.tensor([[1.0, -3.0, 4.0, 0.5]]).to(torch.float8_e4m3fn)
    ao = two_level("torchao", 0.25)
    assert ao.tensor_scale == 0.25
    assert dequantize(codes, ao).tolist() == [[0.5, -1.5, 0.5, 0.0625]]  # v * (t * s)
    ct = two_level("compressed-tensors", 4.0)
    assert dequantize(codes, ct).tolist() == [[0.5, -1.5, 0.5, 0.0625]]  # v * (s / t)
    x = torch.tensor([[0.5, -1.5, 0.5, 0.0625]])
    assert torch.equal(quantize(x, ao).float(), codes.float()) and torch.equal(
        quantize(x, ct).float(), codes.float()
    )


def test_a_malformed_tensor_scale_is_refused() -> None:
    qp = QParams(torch.ones(1), torch.zeros(1, dtype=torch.int32), "x", extra={"tensor_scale": "big"})
    with pytest.raises(QParamsError, match=r"extra\['tensor_scale'\] must be a float in float.hex\(\) form"):
        _ = qp.tensor_scale


def test_extra_from_a_scheme_reaches_the_qparams() -> None:
    class Tagged(Fp8ForTests):
        def qparams_extra(self, lo: torch.Tensor, hi: torch.Tensor, dtype: QuantDtype) -> dict[str, str]:
            return {"tensor_scale": float(torch.max(hi.max(), -lo.min())).hex()}

    x = torch.tensor([[1.0, -3.0], [0.5, 2.0]])
    qp = Tagged().compute_qparams(x, "float8_e4m3fn", PerChannel(0))
    assert qp.tensor_scale == 3.0 and QParams.from_dict(qp.to_dict()).extra == qp.extra
    assert Fp8ForTests().compute_qparams(x).extra == {}


E2M1_PACKED = QuantDtype(
    "e2m1-test", 4, True, None, None, "uint8",
    kind="float_code", exponent_bits=2, mantissa_bits=1, max_value=6.0, packing=Packing(4, 2),
)  # fmt: skip


def test_packed_float_codes_pack_two_per_byte_through_quantize_and_dequantize() -> None:
    x = torch.tensor([[6.0, -0.5, 0.25, 1.75, -6.0, 3.0, 0.0, 5.0]])
    qp = QParams(torch.ones(()), torch.zeros((), dtype=torch.int32), "e2m1-test")
    with temporary_dtypes([E2M1_PACKED], source="test"):
        codes = quantize(x, qp)
        assert codes.tolist() == [[0x7, 0x9, 0x0, 0x4, 0xF, 0x5, 0x0, 0x6]]  # 0.25 -> 0, 1.75 -> 2, 5 -> 4
        packed = quantize(x, qp, pack=True)
        assert packed.tolist() == [[0x97, 0x40, 0x5F, 0x60]]  # first code in the low nibble
        back = dequantize(packed, qp, shape=(1, 8))
        assert torch.equal(back, dequantize(codes, qp))
        assert back.tolist() == [[6.0, -0.5, 0.0, 2.0, -6.0, 3.0, 0.0, 4.0]]
