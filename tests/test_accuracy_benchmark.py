"""The accuracy benchmark maps refdata rows onto the cost model and keeps dense-model error low."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
CSV = REPO.parent / "shared" / "refdata" / "measured.csv"


@pytest.fixture(scope="module")
def acc():
    spec = importlib.util.spec_from_file_location("accuracy", REPO / "benchmarks" / "accuracy.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["accuracy"] = mod  # dataclasses resolve annotations through sys.modules
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.skipif(not CSV.exists(), reason="../shared/refdata not present")
def test_rows_map_and_dense_throughput_error_is_bounded(acc):
    from solver.catalog import load_catalog
    from solver.costmodel import shape_terms

    cat = load_catalog()
    cases, skipped = acc.load_cases(CSV)
    assert len(cases) >= 60
    assert all(reason for _, _, reason in skipped)
    dense = [c for c in cases if c.metric in acc.THROUGHPUT and c.shape.model not in acc.MOE_MODELS]
    rows = [(c, acc.predict(shape_terms(cat, c.shape), c)) for c in dense]
    assert acc.mape(rows) < 20.0


def test_precision_mapping(acc):
    assert acc._formats("FP8 W/A, FP8 KV", "h100-sxm") == ("fp8", "fp8")
    assert acc._formats("NVFP4 weights, FP16 KV", "b200") == ("nvfp4", "fp16")
    assert acc._formats("FP16", "a100-80gb") == ("fp16", "fp16")
    assert acc._formats("not stated", "h100-sxm") is None
