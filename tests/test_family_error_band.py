"""Issue 8, deliver 3: a family without a measurement says so, and its stated error is wider."""

from __future__ import annotations

import pytest

from solver.catalog import load_catalog
from solver.costmodel import Shape, estimate
from solver.schemas import Efficiency


@pytest.fixture(scope="module")
def cat():
    return load_catalog()


def test_every_family_states_whether_it_was_measured_and_its_error(cat):
    by_family = {e.family: e for e in cat.efficiency.values()}
    for fam in ("hopper", "blackwell", "cdna3", "gaudi3"):
        assert by_family[fam].measured is True, fam
    for fam in ("cdna4", "blackwell-ultra"):
        assert by_family[fam].measured is False, fam
    measured = [e.error_pct for e in by_family.values() if e.measured]
    for fam in ("cdna4", "blackwell-ultra"):
        # an unmeasured family's band is wider than every measured family's
        assert by_family[fam].error_pct > max(measured), fam


def test_estimate_carries_the_band(cat):
    h = estimate(cat, Shape("llama-3.1-70b", "h200-sxm", None, "fp8", "fp8", tp=4), 1024, 256, 16)
    m = estimate(cat, Shape("llama-3.1-70b", "mi355x", None, "fp8", "fp8", tp=4), 1024, 256, 16)
    assert h.efficiency_measured is True and m.efficiency_measured is False
    assert h.stated_error_pct == cat.efficiency_for("h200-sxm").error_pct
    assert m.stated_error_pct == cat.efficiency_for("mi355x").error_pct > h.stated_error_pct
    assert m.to_dict()["efficiency_measured"] is False


def test_dead_fields_are_gone():
    with pytest.raises(ValueError):
        Efficiency(id="x", family="hopper", eta_bw=0.8, mfu_prefill=0.5, mfu_decode=0.3,
                   step_overhead_ms=1, source="test")


def test_estimate_cli_says_when_a_family_is_unmeasured():
    from click.testing import CliRunner

    from solver.cli import main

    args = ["estimate", "--model", "llama-3.1-70b", "--quant", "fp8", "--kv-dtype", "fp8", "--tp", "4",
            "--isl", "1024", "--osl", "256", "--concurrency", "16"]
    out = CliRunner().invoke(main, [*args, "--gpu", "mi355x"])
    assert out.exit_code == 0, out.output
    assert "NO measurement of this accelerator family" in out.output and "+-50 %" in out.output
    out = CliRunner().invoke(main, [*args, "--gpu", "h200-sxm"])
    assert "fitted on measurements of this accelerator family" in out.output


def test_plan_json_states_each_deployments_family_error(cat):
    import json

    from click.testing import CliRunner

    from solver.cli import main

    out = CliRunner().invoke(main, ["solve", "problems/chat-assistant-70b.yaml", "--json"])
    assert out.exit_code == 0, out.output
    deps = json.loads(out.output)["deployments"]
    assert deps
    for d in deps:
        assert d["stated_error_pct"] == cat.efficiency_for(d["accelerator"]).error_pct
