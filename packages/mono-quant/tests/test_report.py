from __future__ import annotations

import json
import math

from mono_quant.cli import Report, TensorReport


def _q(name, signal, noise, before=400, after=100):
    return TensorReport(
        name,
        (10, 10),
        "float32",
        "quantized",
        before,
        after,
        scheme="s",
        dtype="int8",
        granularity="per-channel(axis=0)",
        signal=signal,
        noise=noise,
    )


def test_totals_add_up_and_whole_model_sqnr_pools_energies():
    r = Report(
        [_q("a", 100.0, 1.0), _q("b", 300.0, 3.0), TensorReport("c", (10,), "float32", "copied", 40, 40)]
    )
    assert (r.bytes_before, r.bytes_after) == (840, 240)
    assert r.compression_ratio == 3.5
    assert r.sqnr_db == 20.0  # (100 + 300) / (1 + 3)
    assert r.tensors[2].sqnr_db is None


def test_tensors_below_the_threshold_are_flagged_in_table_and_json():
    r = Report([_q("good", 1e4, 1.0), _q("bad", 5.0, 1.0)], plan={"sqnr_threshold_db": 10.0})
    assert [t.name for t in r.flagged()] == ["bad"]
    assert "bad !" in r.render()
    assert "! 1 tensor(s) below 10 dB SQNR: bad" in r.render()
    assert r.to_dict()["totals"]["flagged"] == ["bad"]


def test_an_exact_reconstruction_is_infinite_sqnr_and_valid_json():
    r = Report([_q("exact", 10.0, 0.0)])
    assert math.isinf(r.sqnr_db)
    data = json.loads(json.dumps(r.to_dict(), allow_nan=False))
    assert data["tensors"][0]["sqnr_db"] == "inf" and data["totals"]["sqnr_db"] == "inf"


def test_the_table_lists_quantized_tensors_and_summarises_copied_ones():
    r = Report([_q("w", 100.0, 1.0), TensorReport("b", (10,), "float32", "copied", 40, 40, reason="1-D")])
    text = r.render()
    assert "w" in text and "20.0" in text
    assert "... and 1 tensor(s) copied unchanged" in text
    assert "\nb " not in text
    assert "\nb " in r.render(all_tensors=True)


def test_json_report_has_per_tensor_rows_and_totals(tmp_path):
    r = Report([_q("w", 100.0, 1.0)], wall_time_s=1.25)
    r.write_json(tmp_path / "r.json")
    data = json.loads((tmp_path / "r.json").read_text())
    assert (
        data["tensors"][0] | {"name": "w", "sqnr_db": 20.0, "bytes_before": 400, "bytes_after": 100}
        == data["tensors"][0]
    )
    assert data["totals"]["compression_ratio"] == 4.0 and data["totals"]["wall_time_s"] == 1.25
