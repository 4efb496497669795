"""What the whole-process `query` does less of: YAML through libyaml's parser (same data as the
Python parser), and one shape evaluation shared by the plan and its confidence summary."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from solver import api
from solver.candidates import TableCache, build_tables
from solver.catalog import load_catalog
from solver.confidence import confidence_summary, point_tables
from solver.loading import _FastLoader, _Loader

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.skipif(_FastLoader is None, reason="PyYAML built without libyaml: the Python parser is the only one")
def test_fast_and_python_yaml_loaders_read_every_bundled_file_alike() -> None:
    """Catalogs, problems and the bad-input gallery: equal data, or both refuse the file. (The
    gallery's hostile files -- anchor bombs, deep nesting -- are refused before or after parsing
    by the limits in solver.loading, whose messages tests/test_bad_inputs.py checks; comparing an
    anchor bomb's expansion would take exponential time.)"""
    files = sorted(ROOT.glob("catalogs/*.yaml")) + sorted(ROOT.glob("problems/*.yaml")) \
        + sorted(f for f in ROOT.glob("tests/bad_inputs/*.yaml") if not f.name.startswith("hostile-"))
    assert len(files) > 20
    both_parsed = 0
    for f in files:
        try:
            text = f.read_bytes().decode("utf-8")
        except UnicodeDecodeError:
            continue
        got = []
        for loader in (_FastLoader, _Loader):
            try:
                got.append(("ok", yaml.load(text, Loader=loader)))  # both safe loaders
            except (yaml.YAMLError, RecursionError):
                got.append(("error", None))
        assert got[0] == got[1], f.name
        both_parsed += got[0][0] == "ok"
    assert both_parsed > 20


def test_confidence_summary_reuses_the_plans_shape_evaluations() -> None:
    """The query command passes one TableCache to the solve and to the confidence summary:
    the summary evaluates no shape again (before, every shape was evaluated twice), and its
    tables are the plan's own build, not a rebuild."""
    cat = load_catalog()
    p = api.single_model_problem(model="llama-3.1-8b", rps=5, isl=1000, osl=200, ttft_p99_ms=800,
                                 tpot_p99_ms=40, gpus=["l40s", "h100-sxm"], cat=cat)
    cache = TableCache()
    plan = api.query(p, cat, cache=cache)
    assert plan.status.has_plan
    misses, hits = cache.misses, cache.hits
    assert misses > 0
    summary = confidence_summary(p, cat, plan, 10.0, 1, cache)
    assert summary["hardware"]
    assert cache.misses == misses and cache.hits == hits + 1  # one look-up, answered whole
    assert point_tables(p, cat, cache) is build_tables(p, cat, cache=cache)
