"""benchmarks/data/vendor_measured.csv: measured.csv's columns, a source on every row, and rows that
accuracy.py's own row parser maps onto the cost model (AMD CDNA and Intel Gaudi parts)."""

from __future__ import annotations

import csv
import importlib.util
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
VENDOR = REPO / "benchmarks" / "data" / "vendor_measured.csv"
MEASURED = REPO.parent / "shared" / "refdata" / "measured.csv"
COLUMNS = ["source", "engine", "model", "gpu", "num_gpus", "tp", "pp", "ep", "precision", "isl", "osl",
           "scenario", "metric", "value", "notes"]


@pytest.fixture(scope="module")
def fit_vendor():
    spec = importlib.util.spec_from_file_location("fit_vendor", REPO / "benchmarks" / "fit_vendor.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["fit_vendor"] = mod
    spec.loader.exec_module(mod)
    return mod


def _rows() -> list[dict[str, str]]:
    with open(VENDOR, newline="") as fh:
        return list(csv.DictReader(fh))


def test_columns_are_measured_csvs() -> None:
    with open(VENDOR, newline="") as fh:
        header = next(csv.reader(fh))
    assert header == COLUMNS
    if MEASURED.exists():  # the shared reference table, when the checkout has it
        with open(MEASURED, newline="") as fh:
            assert header == next(csv.reader(fh))


def test_every_row_has_a_source_url_a_value_and_notes() -> None:
    rows = _rows()
    assert rows
    for r in rows:
        assert r["source"].startswith("https://"), r
        assert float(r["value"]) > 0 and r["notes"].strip(), r


def test_rows_parse_with_accuracys_row_parser(fit_vendor) -> None:
    cases, skipped = fit_vendor.load_vendor_cases(VENDOR)
    assert all(why for _, _, why in skipped)
    gpus = {c.shape.accelerator for c in cases}
    assert {"mi300x", "mi325x", "gaudi3"} <= gpus
    # every throughput/latency row except the ones whose unit the source leaves open is mapped
    unmapped = [why for _, _, why in skipped if "definition_unstated" not in why]
    assert unmapped == []
    by_gpu = {g: sum(c.shape.accelerator == g for c in cases) for g in gpus}
    assert by_gpu["gaudi3"] == 16 and by_gpu["mi300x"] >= 18


def test_a_row_maps_to_the_shape_its_text_states(fit_vendor) -> None:
    row = next(r for r in _rows() if r["gpu"].startswith("Gaudi") and r["model"] == "Llama-3.1-70B"
               and r["num_gpus"] == "8" and r["isl"] == "2048" and r["osl"] == "128")
    case = fit_vendor.acc.map_row(0, row)
    assert (case.shape.model, case.shape.accelerator, case.shape.tp, case.shape.quant) == \
        ("llama-3.1-70b", "gaudi3", 8, "fp8")
    assert (case.concurrency, case.metric, case.measured) == ("n:400", "output_tokens_per_s_total", 1600.0)
