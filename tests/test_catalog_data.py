"""Checks on the hardware data in ``catalogs/``: required ids, sources, physical sanity, prices.

The files are read and validated one by one with the pydantic schemas, so these tests do not
depend on ``efficiency.yaml`` (owned separately). One test copies the catalog folder, adds
placeholder efficiency entries for missing families *in the copy only*, and runs the full
``load_catalog`` cross-checks on it.
"""

from __future__ import annotations

import csv
import datetime as dt
import shutil
from pathlib import Path

import pytest
import yaml

from solver.catalog import load_catalog
from solver.loading import read_yaml, validate
from solver.schemas import Accelerator, Price, QuantizationsFile, System

REPO = Path(__file__).resolve().parent.parent
CATALOGS = REPO / "catalogs"
REFDATA = REPO.parent / "shared" / "refdata"
TODAY = dt.date(2026, 11, 26)

REQUIRED_ACCELERATORS = {
    "a10g", "l4", "l40s", "a100-40gb", "a100-80gb", "h100-sxm", "h100-pcie", "h100-nvl",
    "h200-sxm", "b200", "gb200", "b300", "gb300", "mi300x", "mi325x", "mi355x", "gaudi3",
}
REQUIRED_QUANTS = {"bf16", "fp16", "fp8", "int8", "w4a16", "nvfp4", "mxfp4"}
REQUIRED_KV = {"bf16", "fp16", "fp8"}
# Accelerators with no dated public per-GPU price found (documented gap, see prices.yaml header).
UNPRICED_OK = {"b300", "gb300", "mi355x", "gaudi3"}


def _load(filename: str, key: str, schema):
    data = read_yaml(CATALOGS / filename)
    items = [validate(schema, item, where=f"{filename}[{i}]") for i, item in enumerate(data[key])]
    ids = [e.id for e in items]
    assert len(ids) == len(set(ids)), f"duplicate ids in {filename}"
    return {e.id: e for e in items}


@pytest.fixture(scope="module")
def accs() -> dict[str, Accelerator]:
    return _load("accelerators.yaml", "accelerators", Accelerator)


@pytest.fixture(scope="module")
def systems() -> dict[str, System]:
    return _load("systems.yaml", "systems", System)


@pytest.fixture(scope="module")
def prices() -> dict[str, Price]:
    return _load("prices.yaml", "prices", Price)


@pytest.fixture(scope="module")
def quants() -> QuantizationsFile:
    return validate(QuantizationsFile, read_yaml(CATALOGS / "quantizations.yaml"), where="quantizations.yaml")


def _has_real_source(src: str) -> bool:
    """A source names at least one address or a document, not a placeholder."""
    s = src.strip().lower()
    if not s or "placeholder" in s or s in {"tbd", "todo", "unknown"}:
        return False
    return len(s) >= 15


# --------------------------------------------------------------------------- ids and sources
def test_required_accelerators_present(accs):
    assert REQUIRED_ACCELERATORS <= set(accs), REQUIRED_ACCELERATORS - set(accs)


def test_required_quantizations_and_kv_present(quants):
    assert REQUIRED_QUANTS <= {q.id for q in quants.quantizations}
    assert REQUIRED_KV <= {k.id for k in quants.kv_dtypes}


def test_seed_system_id_kept(systems):
    assert "hgx-h100-8" in systems
    assert {"gb200-nvl72", "gb300-nvl72", "mi300x-8", "gaudi3-8", "pcie-l40s-8"} <= set(systems)


def test_every_entry_has_a_real_source(accs, systems, prices, quants):
    entries = [*accs.values(), *systems.values(), *prices.values(), *quants.quantizations, *quants.kv_dtypes]
    bad = [e.id for e in entries if not _has_real_source(e.source)]
    assert not bad, f"entries without a real source: {bad}"
    for q in quants.quantizations:
        assert _has_real_source(q.quality_loss.source), q.id


def test_hardware_sources_cite_addresses(accs, systems):
    for e in [*accs.values(), *systems.values()]:
        assert "http" in e.source, f"{e.id}: source should include at least one address"


def test_estimates_carry_reasoning(accs, systems):
    for e in [*accs.values(), *systems.values()]:
        for field, why in e.estimated.items():
            assert len(why.strip()) >= 20, f"{e.id}.{field}: estimate needs its reasoning"


def test_latencies_are_marked_estimated(systems):
    for s in systems.values():
        assert "intra_node_latency_us" in s.estimated, s.id
        assert "scaleout_latency_us" in s.estimated, s.id


# --------------------------------------------------------------------------- systems
def test_every_accelerator_has_a_system(accs, systems):
    used = {s.accelerator for s in systems.values()}
    assert set(accs) <= used, f"accelerators without a system: {set(accs) - used}"
    assert used <= set(accs), f"systems naming unknown accelerators: {used - set(accs)}"


def test_system_shapes_are_consistent(accs, systems):
    for s in systems.values():
        acc = accs[s.accelerator]
        if s.nodes_per_domain > 1:  # rack-scale domain (NVL72)
            assert s.scaleup_domain_gpus == s.gpus_per_node * s.nodes_per_domain, s.id
        # a system's scale-up domain never exceeds what the accelerator supports, except for
        # PCIe boxes where the "domain" is the PCIe tree of one node
        if s.intra_node_link != "pcie":
            assert s.scaleup_domain_gpus <= acc.scaleup_domain_gpus, s.id
        if s.intra_node_link in {"nvlink", "nvlink-bridge", "infinity-fabric"}:
            assert s.intra_node_gb_s == pytest.approx(acc.scaleup_link_gb_s), s.id
        if s.intra_node_link == "pcie":
            assert s.intra_node_gb_s <= acc.pcie_gb_s, s.id
        assert 0 < s.scaleout_gb_s_per_gpu < s.intra_node_gb_s or s.intra_node_link == "pcie", s.id


def test_nvl72_racks(systems):
    for sid, acc in (("gb200-nvl72", "gb200"), ("gb300-nvl72", "gb300")):
        s = systems[sid]
        assert (s.accelerator, s.gpus_per_node, s.scaleup_domain_gpus, s.nodes_per_domain) == (acc, 4, 72, 18)


def test_h100_nvl_is_a_bridged_pair(systems):
    s = next(s for s in systems.values() if s.accelerator == "h100-nvl")
    assert s.intra_node_link == "nvlink-bridge" and s.scaleup_domain_gpus == 2


def test_gaudi3_scales_up_over_roce(systems):
    assert systems["gaudi3-8"].intra_node_link == "roce"


def test_scaleout_from_nics(systems):
    # 8x 400 Gb/s ConnectX-7 per HGX H100 node = 400 GB/s / 8 GPUs
    assert systems["hgx-h100-8"].scaleout_gb_s_per_gpu == pytest.approx(8 * 400 / 8 / 8)


# --------------------------------------------------------------------------- physical ranges
def test_physical_ranges(accs):
    for a in accs.values():
        assert 0.2 <= a.hbm_tb_s <= 10, a.id
        assert 16 <= a.hbm_gib <= 300, a.id
        assert 50 <= a.tdp_w <= 2000, a.id
        assert a.pcie_gb_s in {32, 64, 128} or a.form_factor == "superchip", a.id
        peak16 = a.dense_tflops.get("bf16", a.dense_tflops.get("fp16"))
        assert 30 <= peak16 <= 5000, a.id
        for dtype, v in a.dense_tflops.items():
            assert v <= 20000, f"{a.id}.{dtype}: {v} looks like a sparse figure"


def test_fp8_is_twice_bf16_on_nvidia_hopper_and_blackwell(accs):
    for a in accs.values():
        if a.family in {"hopper", "blackwell", "blackwell-ultra"} and {"fp8", "bf16"} <= set(a.dense_tflops):
            assert a.dense_tflops["fp8"] == pytest.approx(2 * a.dense_tflops["bf16"], rel=0.01), a.id
        if "fp4" in a.dense_tflops and "fp8" in a.dense_tflops:
            assert a.dense_tflops["fp4"] >= 1.9 * a.dense_tflops["fp8"], a.id


def test_fp16_equals_bf16_where_both(accs):
    for a in accs.values():
        if {"fp16", "bf16"} <= set(a.dense_tflops):
            assert a.dense_tflops["fp16"] == a.dense_tflops["bf16"], a.id


def test_low_precision_only_where_hardware_has_it(accs):
    for a in accs.values():
        if a.family == "ampere":
            assert "fp8" not in a.dense_tflops and "fp4" not in a.dense_tflops, a.id
        if "fp4" in a.dense_tflops:
            assert a.family in {"blackwell", "blackwell-ultra", "cdna4"}, a.id


def test_pcie_only_cards_have_no_scaleup(accs):
    for gid in ("a10g", "l4", "l40s"):
        assert accs[gid].scaleup_link_gb_s == 0 and accs[gid].scaleup_domain_gpus == 1


def test_memory_and_bandwidth_ordering(accs):
    # generational sanity: newer parts have at least as much memory bandwidth
    order = ["a100-80gb", "h100-sxm", "h200-sxm", "b200"]
    bws = [accs[g].hbm_tb_s for g in order]
    assert bws == sorted(bws)
    assert accs["h200-sxm"].hbm_gib > accs["h100-sxm"].hbm_gib
    assert accs["mi325x"].hbm_gib > accs["mi300x"].hbm_gib


# --------------------------------------------------------------------------- quantisation
def test_scale_overheads_follow_block_arithmetic(quants):
    q = {x.id: x for x in quants.quantizations}
    assert q["w4a16"].scale_overhead_fraction == pytest.approx((16 + 16) / (128 * 4))
    assert q["nvfp4"].scale_overhead_fraction == pytest.approx(8 / (16 * 4))
    assert q["mxfp4"].scale_overhead_fraction == pytest.approx(8 / (32 * 4))
    assert q["bf16"].bytes_per_weight == 2
    assert q["fp8"].bytes_per_weight == 1
    assert q["nvfp4"].bytes_per_weight > q["mxfp4"].bytes_per_weight


def test_quant_support_matches_hardware(quants, accs):
    q = {x.id: x for x in quants.quantizations}
    assert set(q["nvfp4"].native_families) == {"blackwell", "blackwell-ultra"}
    assert {"blackwell", "blackwell-ultra", "cdna4"} <= set(q["mxfp4"].native_families)
    assert any("hopper" in e.families and e.compute_dtype == "bf16" for e in q["mxfp4"].emulated)
    assert "ampere" not in q["fp8"].native_families
    assert any("ampere" in e.families and e.compute_dtype == "bf16" for e in q["fp8"].emulated)
    for e in q["w4a16"].emulated:
        assert e.compute_dtype in {"bf16", "fp16"}
    # every natively supported family has a peak figure for the format's compute dtype
    for quant in q.values():
        for a in accs.values():
            if a.family in quant.native_families:
                assert quant.compute_dtype in a.dense_tflops, f"{quant.id} native on {a.id} without a peak"
            for em in quant.emulated:
                if a.family in em.families:
                    assert em.compute_dtype in a.dense_tflops, f"{quant.id} emulated on {a.id}"


def test_quality_losses_are_real_numbers(quants):
    for q in quants.quantizations:
        if q.id in {"bf16", "fp16"}:
            continue
        ql = q.quality_loss
        assert ql.benchmark and "placeholder" not in ql.benchmark.lower(), q.id
        assert ql.measured_on and "placeholder" not in ql.measured_on.lower(), q.id
        assert 0 <= ql.points < 30, q.id
    q = {x.id: x for x in quants.quantizations}
    assert q["fp8"].quality_loss.points < q["w4a16"].quality_loss.points


def test_kv_bytes(quants):
    kv = {k.id: k for k in quants.kv_dtypes}
    assert kv["bf16"].bytes_per_element == 2 and kv["fp16"].bytes_per_element == 2
    assert kv["fp8"].bytes_per_element == 1


# --------------------------------------------------------------------------- prices
def test_prices_dated_and_not_in_future(prices):
    for p in prices.values():
        assert dt.date(2023, 1, 1) <= p.date <= TODAY, p.id


def test_price_ranges_and_ids(prices, accs):
    for p in prices.values():
        assert p.accelerator in accs, p.id
        assert 0.1 <= p.usd_per_gpu_hour <= 20, p.id
        assert p.id.startswith(p.accelerator + "-"), p.id
        assert p.id.endswith(p.pricing), p.id


def test_price_coverage(prices, accs):
    providers = {p.provider.split(" (")[0] for p in prices.values()}
    assert len(providers) >= 3
    kinds = {p.pricing for p in prices.values()}
    assert "on-demand" in kinds and kinds & {"reserved", "spot"}
    priced = {p.accelerator for p in prices.values()}
    assert set(accs) - priced <= UNPRICED_OK, f"unexpectedly unpriced: {set(accs) - priced - UNPRICED_OK}"


def test_a10_price_not_mapped_to_a10g(prices):
    for p in prices.values():
        if p.accelerator == "a10g":
            assert "lambda" not in p.provider.lower(), "Lambda's price is for the A10, not the A10G"


# --------------------------------------------------------------------------- refdata spot checks
REFDATA_MAP = {  # refdata hardware.csv gpu column -> our id
    "L4": "l4",
    "L40S": "l40s",
    "A100-40GB SXM4": "a100-40gb",
    "A100-80GB SXM4": "a100-80gb",
    "H100 SXM": "h100-sxm",
    "H100 PCIe": "h100-pcie",
    "H200 SXM": "h200-sxm",
    "B200 (HGX/DGX)": "b200",
    "GB200 (NVL72)": "gb200",
    "B300 (HGX/DGX)": "b300",
    "GB300 (NVL72)": "gb300",
    "MI300X": "mi300x",
    "MI325X": "mi325x",
    "MI355X": "mi355x",
}


def _ref_rows() -> list[dict[str, str]]:
    path = REFDATA / "hardware.csv"
    if not path.is_file():
        pytest.skip(f"refdata not available at {path} (shared checkout absent); spot-check skipped")
    with path.open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def test_spot_check_against_refdata(accs):
    rows = {r["gpu"]: r for r in _ref_rows()}
    checked = 0
    pairs = [
        ("hbm_gib", lambda a: a.hbm_gib),
        ("hbm_tb_s", lambda a: a.hbm_tb_s),
        ("bf16_dense_tflops", lambda a: a.dense_tflops.get("bf16")),
        ("fp8_dense_tflops", lambda a: a.dense_tflops.get("fp8")),
        ("fp4_dense_tflops", lambda a: a.dense_tflops.get("fp4")),
        ("int8_tops", lambda a: a.dense_tflops.get("int8")),
        ("tdp_w", lambda a: a.tdp_w),
    ]
    for ref_name, gid in REFDATA_MAP.items():
        row = rows.get(ref_name)
        assert row is not None, f"refdata row {ref_name!r} missing"
        acc = accs[gid]
        for col, get in pairs:
            if not row[col]:
                continue
            ours = get(acc)
            assert ours is not None, f"{gid}: refdata has {col}={row[col]} but catalog has none"
            assert ours == pytest.approx(float(row[col]), rel=0.01), f"{gid}.{col}"
            checked += 1
    assert checked >= 50


def test_refdata_prices_match_where_reused(prices):
    path = REFDATA / "prices.csv"
    if not path.is_file():
        pytest.skip(f"refdata not available at {path}; price spot-check skipped")
    with path.open(newline="", encoding="utf-8") as fh:
        ref = {float(r["usd_per_gpu_hour"]) for r in csv.DictReader(fh)}
    # a few rows must carry the refdata figure exactly
    for pid in ("h100-sxm-lambda-on-demand", "b200-lambda-on-demand", "l40s-nebius-on-demand",
                "h100-nvl-azure-on-demand", "a100-40gb-aws-capacity-block-reserved"):
        assert prices[pid].usd_per_gpu_hour in ref, pid


# --------------------------------------------------------------------------- full load
def test_full_catalog_cross_checks(tmp_path):
    """Run load_catalog's cross-checks on a copy, adding placeholder efficiency rows if needed."""
    copy = tmp_path / "catalogs"
    shutil.copytree(CATALOGS, copy)
    eff_path = copy / "efficiency.yaml"
    eff = yaml.safe_load(eff_path.read_text()) or {}
    rows = eff.setdefault("efficiency", [])
    have = {r["family"] for r in rows}
    accs_data = yaml.safe_load((copy / "accelerators.yaml").read_text())["accelerators"]
    for fam in sorted({a["family"] for a in accs_data} - have):
        rows.append({
            "id": f"{fam}-test-only", "family": fam, "eta_bw": 0.8, "mfu_prefill": 0.5,
            "mfu_decode": 0.4, "source": "test-only placeholder in a temporary copy",
        })
    eff_path.write_text(yaml.safe_dump(eff, sort_keys=False))
    cat = load_catalog(copy)
    assert REQUIRED_ACCELERATORS <= set(cat.accelerators)
    assert cat.default_system("gb200").id == "gb200-nvl72"
    assert cat.default_system("h100-sxm").id == "hgx-h100-8"
    assert cat.quant_support("b200", "nvfp4") == "native"
    assert cat.quant_support("h100-sxm", "nvfp4") is None
    assert cat.compute_dtype("h100-sxm", "mxfp4") == "bf16"
    assert cat.compute_dtype("mi355x", "mxfp4") == "fp4"
    assert cat.compute_dtype("a100-80gb", "fp8") == "bf16"
    assert cat.prices_for("h100-sxm")[0].usd_per_gpu_hour <= 3.0
