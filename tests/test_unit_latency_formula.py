"""One formula for a disaggregated unit's latencies: the candidate table's TTFT and E2E at
capacity are :func:`solver.disagg.unit_latencies`, the function the verifier and the plan call,
so the two cannot drift (they used to be two codes: the table read the waits off an
interpolated utilisation grid, the verifier computed them exactly)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from solver.candidates import ModelTable, build_tables
from solver.catalog import load_catalog
from solver.disagg import unit_latencies
from solver.problem import Problem

ROOT = Path(__file__).resolve().parent.parent
PROBLEMS = sorted((ROOT / "problems").glob("*.yaml"))
CAT = load_catalog()


def _with_units(path: Path) -> Problem:
    """A bundled problem with both serving modes offered to every model entry (no bundled
    problem offers units as written)."""
    raw = yaml.safe_load(path.read_text())
    for m in raw["models"]:
        m["serving_modes"] = ["aggregated", "disaggregated"]
    return Problem.model_validate(raw)


def test_every_unit_of_the_bundled_problems_has_the_verifiers_latencies() -> None:
    """Every unit candidate of every bundled problem (units offered to every model): its TTFT
    and E2E at capacity equal ``unit_latencies`` of that unit at its capacity, exactly."""
    per_problem: dict[str, int] = {}
    for path in PROBLEMS:
        n = 0
        for table in build_tables(_with_units(path), CAT, workers=1):
            for c in table.candidates:
                if c.unit is None:
                    continue
                lat = unit_latencies(c.unit, table.demand, c.unit.capacity_rps)
                assert (c.ttft_p99_ms, c.e2e_p99_ms, c.tpot_p99_ms) == (lat.ttft_ms, lat.e2e_ms, lat.tpot_ms), \
                    (path.stem, c.model, c.unit)
                n += 1
        per_problem[path.stem] = n
    assert sum(per_problem.values()) > 100 and sum(1 for n in per_problem.values() if n) >= 5, per_problem


@pytest.fixture(scope="module")
def chat_table() -> ModelTable:
    """The chat example's table with units offered."""
    return next(t for t in build_tables(_with_units(ROOT / "problems" / "chat-assistant-70b.yaml"), CAT, workers=1)
                if any(c.unit for c in t.candidates))


def test_unit_latencies_over_many_units_is_each_units_own(chat_table: ModelTable) -> None:
    """The array form (a sequence of units and their loads) gives, per unit, what the one-unit
    call gives: the same numbers, not merely close ones."""
    table = chat_table
    units = [c.unit for c in table.candidates if c.unit is not None]
    assert len(units) > 10
    loads = np.array([u.capacity_rps * f for u, f in zip(units, np.linspace(0.2, 1.0, len(units)))])
    many = unit_latencies(units, table.demand, loads)
    for i, (u, lam) in enumerate(zip(units, loads)):
        one = unit_latencies(u, table.demand, float(lam))
        assert (many.ttft_ms[i], many.tpot_ms[i], many.e2e_ms[i], many.prefill_utilisation[i],
                many.decode_utilisation[i]) == (one.ttft_ms, one.tpot_ms, one.e2e_ms,
                                                one.prefill_utilisation, one.decode_utilisation)


def test_unit_latencies_by_hand_at_one_load(chat_table: ModelTable) -> None:
    """One unit at half its capacity: TTFT = prefill + transfer floor + the pool's M/M/c wait
    quantile (Erlang C, exact) x Allen-Cunneen; E2E adds the decode pool's slot wait at the E2E
    percentile; utilisations are load x service / servers."""
    from solver.queueing import allen_cunneen, erlang_c

    table = chat_table
    u = next(c.unit for c in table.candidates if c.unit is not None and c.unit.n_prefill > 1)
    d = table.demand
    lam = u.capacity_rps / 2

    def wait_ms(c: int, rate: float, s: float, q: float) -> float:
        pw = float(erlang_c(c, rate * s)[0])
        return max(0.0, np.log(pw / (1 - q)) / (c / s - rate)) * 1e3

    qt, qe = d.slo.percentile("ttft") / 100, d.slo.percentile("e2e") / 100
    c = u.n_prefill * u.prefill.servers
    mg = float(allen_cunneen(u.prefill.service_cv2))
    lat = unit_latencies(u, d, lam)
    assert lat.ttft_ms == pytest.approx(u.ttft_min_ms + wait_ms(c, lam, u.prefill.service_s, qt) * mg, rel=1e-12)
    assert lat.e2e_ms == pytest.approx(
        u.e2e_min_ms + wait_ms(c, lam, u.prefill.service_s, qe) * mg
        + wait_ms(u.decode.batch, lam / u.n_decode, u.decode.service_s, qe), rel=1e-12)
    assert lat.prefill_utilisation == pytest.approx(lam / u.n_prefill * u.prefill.service_s / u.prefill.servers)
    assert lat.decode_utilisation == pytest.approx(lam / u.n_decode * u.decode.service_s / u.decode.batch)
