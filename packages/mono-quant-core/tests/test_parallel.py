"""block_threads: block loops on a few threads give exactly the results of the default loops."""

from __future__ import annotations

import multiprocessing
from collections.abc import Iterator

import pytest
import torch

from mono_quant.core import (
    Capabilities,
    MinMaxScheme,
    NonFiniteError,
    Packing,
    PerChannel,
    PerGroup,
    PerTensor,
    QuantDtype,
    Scheme,
    block_threads,
    dequantize,
    float_code_qparams,
    quantization_error,
    quantize,
    quantize_with_error,
    temporary_dtypes,
)
from mono_quant.core._granularity import Granularity
from mono_quant.core._kernels import BLOCK_ELEMENTS
from mono_quant.core._parallel import current_block_threads, run_blocks


class Fp8ForTests(MinMaxScheme):
    name, version = "core-test-fp8-threads", "0"
    capabilities = Capabilities(dtypes=("float8_e4m3fn",), default_dtype="float8_e4m3fn")

    def qparams_from_range(
        self, lo: torch.Tensor, hi: torch.Tensor, dtype: QuantDtype
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return float_code_qparams(lo, hi, dtype, self.profile)


# Shapes with several row blocks and a partial last one, so every thread gets work.
ROWS = 3 * (BLOCK_ELEMENTS // 1024) + 5
CASES: list[tuple[tuple[int, ...], Granularity, str]] = [
    ((ROWS, 1024), PerChannel(0), "int8"),
    ((ROWS, 1024), PerChannel(0), "uint8"),
    ((1024, ROWS), PerChannel(1), "int8"),  # rows are not a view of the input
    ((ROWS, 1024), PerGroup(1, 128), "ptest-uint4"),  # packed inside the loop
    ((ROWS, 1024), PerGroup(1, 128), "ptest-int4"),
    ((ROWS, 1000), PerGroup(1, 128), "int8"),  # a padded group
    ((ROWS, 1024), PerTensor(), "int8"),
    ((768, 1024), PerTensor(), "int8"),  # one long row, cut into rows of 4096 that share the scale
    ((768, 1024), PerTensor(), "ptest-uint4"),
]

# Core alone registers no 4-bit dtype: these have mono-quant-int4's layout (two per byte).
FOUR_BIT = [
    QuantDtype("ptest-int4", 4, True, -8, 7, "int8", packing=Packing(4, 2, offset=8)),
    QuantDtype("ptest-uint4", 4, False, 0, 15, "uint8", packing=Packing(4, 2)),
]


@pytest.fixture(autouse=True)
def _four_bit_dtypes() -> Iterator[None]:
    with temporary_dtypes(FOUR_BIT, source="test_parallel"):
        yield


def _everything(scheme: Scheme, x: torch.Tensor, dtype: str, g: Granularity) -> list[object]:
    if g == PerGroup(1, 128) and x.shape[1] % 128:
        scheme = scheme.configure(nondivisible="pad")
    qp = scheme.compute_qparams(x, dtype, g)
    codes = quantize(x, qp)
    packed = quantize(x, qp, pack=True)
    _, qp2, energies = quantize_with_error(scheme, x, dtype, g)
    return [
        qp.scale,
        qp.zero_point,
        codes,
        packed,
        qp2.scale,
        energies,
        quantization_error(x, codes, qp),
        dequantize(codes, qp),
        dequantize(packed, qp, shape=tuple(x.shape)),
        dequantize(codes, qp, dtype=torch.bfloat16),
    ]


def _same(a: list[object], b: list[object]) -> None:
    for i, (u, v) in enumerate(zip(a, b, strict=True)):
        if isinstance(u, torch.Tensor):
            assert isinstance(v, torch.Tensor) and u.dtype == v.dtype, i
            bits = (lambda t: t.view(torch.uint8)) if u.dtype.itemsize == 1 else (lambda t: t)
            assert torch.equal(bits(u), bits(v)), f"result {i} differs"
        else:
            # Error sums are float32 dot products per block: BLAS sums in its own order
            # for each thread count (also without block_threads), so equal to rounding.
            assert u == pytest.approx(v, rel=1e-4), f"result {i}: {u} != {v}"


@pytest.mark.parametrize(("shape", "g", "dtype"), CASES, ids=str)
@pytest.mark.parametrize("x_dtype", [torch.float32, torch.bfloat16])
def test_block_threads_give_bit_identical_results(
    asym: Scheme, sym: Scheme, shape: tuple[int, ...], g: Granularity, dtype: str, x_dtype: torch.dtype
) -> None:
    x = (torch.randn(shape, generator=torch.Generator().manual_seed(3)) * 2).to(x_dtype)
    for scheme in (asym, sym):
        if scheme is sym and ("uint" in dtype or shape[-1] == 1000):
            continue
        default = _everything(scheme, x, dtype, g)
        for threads in (2, 3):
            with block_threads(threads):
                _same(default, _everything(scheme, x, dtype, g))


def test_float_codes_are_bit_identical_on_threads() -> None:
    x = torch.randn(ROWS, 1024, generator=torch.Generator().manual_seed(5))
    qp = Fp8ForTests().compute_qparams(x, "float8_e4m3fn", PerChannel(0))
    codes = quantize(x, qp)
    with block_threads(2):
        assert torch.equal(quantize(x, qp).view(torch.uint8), codes.view(torch.uint8))


def test_torch_threads_are_one_inside_and_restored_after_even_on_error() -> None:
    before = torch.get_num_threads()
    with block_threads(3) as n:
        assert n == 3 and current_block_threads() == 3 and torch.get_num_threads() == 1
        with block_threads(2):  # nested: the inner count, then the outer again
            assert current_block_threads() == 2
        assert current_block_threads() == 3
    assert torch.get_num_threads() == before and current_block_threads() == 0
    with pytest.raises(RuntimeError, match="boom"), block_threads(2):
        raise RuntimeError("boom")
    assert torch.get_num_threads() == before and current_block_threads() == 0


def test_the_default_count_is_torchs_thread_count() -> None:
    with block_threads() as n:
        assert n >= 1
    assert n == torch.get_num_threads()


@pytest.mark.parametrize("bad", [0, -2, 1.5, True, "2"])
def test_a_bad_thread_count_is_refused_with_its_value(bad: object) -> None:
    with (
        pytest.raises(ValueError, match=rf"threads must be a positive int, got {bad!r}"),
        block_threads(bad),  # type: ignore[arg-type]
    ):
        pass


def test_non_finite_input_raises_from_any_thread(asym: Scheme) -> None:
    x = torch.randn(ROWS, 1024)
    x[ROWS - 2, 7] = float("nan")  # in the last blocks, likely a pool thread's
    with block_threads(2), pytest.raises(NonFiniteError):
        asym.quantize_tensor(x, "int8", PerChannel(0))


def test_an_error_in_a_block_is_raised_after_every_thread_stops() -> None:
    started: list[int] = []

    def worker():  # type: ignore[no-untyped-def]
        def work(i: int) -> int:
            started.append(i)
            if i == 1:
                raise KeyError("block 1")
            return i

        return work

    with block_threads(2), pytest.raises(KeyError, match="block 1"):
        run_blocks(50, worker)
    assert len(started) < 50  # the others stopped early


def test_a_loop_inside_a_block_runs_inline_without_deadlock() -> None:
    def inner():  # type: ignore[no-untyped-def]
        return lambda j: j * 2

    def outer():  # type: ignore[no-untyped-def]
        return lambda i: sum(run_blocks(8, inner)) + i

    with block_threads(2):
        assert run_blocks(16, outer) == [56 + i for i in range(16)]


def _child(queue: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    x = torch.randn(ROWS, 1024)
    with block_threads(2):
        queue.put(int(quantize(x, _QP).sum()))


_QP = None


def test_a_forked_child_gets_a_working_pool(asym: Scheme) -> None:
    global _QP
    x = torch.randn(ROWS, 1024)
    _QP = asym.compute_qparams(x, "int8", PerChannel(0))
    with block_threads(2):
        quantize(x, _QP)  # the parent's pool now exists
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    child = ctx.Process(target=_child, args=(queue,))
    child.start()
    child.join(timeout=120)
    if child.is_alive():
        child.kill()
        pytest.fail("the forked child hung on the parent's thread pool")
    assert child.exitcode == 0 and isinstance(queue.get(timeout=5), int)


@pytest.mark.parametrize("where", [0, BLOCK_ELEMENTS + 3, 3 * BLOCK_ELEMENTS - 1])
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), None])
def test_the_finiteness_check_on_threads_agrees_with_the_single_pass(where: int, bad: float | None) -> None:
    from mono_quant.core._kernels import all_finite

    x = torch.full((3 * BLOCK_ELEMENTS,), 3e38)  # finite, but every block's sum overflows
    if bad is not None:
        x[where] = bad
    expected = bad is None
    assert all_finite(x) is expected
    with block_threads(2):
        assert all_finite(x) is expected
        assert all_finite(x.view(-1, 2).t()) is expected  # not contiguous: the single pass
