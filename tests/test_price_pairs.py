"""Reserved and spot prices are compared like with like (issue 12 item 4).

Every reserved or spot row of the bundled catalog is dated and sourced, and either names the same
provider's on-demand row for the same accelerator, read from the same source on the same day
(``on_demand_ref``), or says why no such row exists (``unpaired_reason``). The Azure rows are
checked against the figures of the Retail Prices API snapshot they were read from.
"""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from solver.catalog import load_catalog, provider_key
from solver.cli import main
from solver.purchasing import tiers_for

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def cat():
    return load_catalog()


def test_every_reserved_and_spot_row_is_dated_sourced_and_paired_or_says_why(cat) -> None:
    """A discount is only stated against the same provider's on-demand price read from the same
    source on the same day; a row that cannot be paired carries its reason."""
    committed = [p for p in cat.prices.values() if p.pricing != "on-demand"]
    assert len(committed) >= 30
    for p in committed:
        assert dt.date(2023, 1, 1) <= p.date <= dt.date.today(), p.id
        assert "http" in p.source, p.id
        assert (p.on_demand_ref is None) != (p.unpaired_reason is None), p.id
        if p.on_demand_ref is None:
            assert len(p.unpaired_reason or "") >= 30, p.id
            continue
        ref = cat.prices[p.on_demand_ref]
        assert ref.pricing == "on-demand" and ref.accelerator == p.accelerator, p.id
        assert provider_key(ref.provider) == provider_key(p.provider), p.id
        assert (ref.date, ref.source, ref.region) == (p.date, p.source, p.region), p.id
        assert p.usd_per_gpu_hour < ref.usd_per_gpu_hour, p.id
    unpaired = sorted(p.id for p in committed if p.unpaired_reason)
    assert unpaired == ["a100-40gb-aws-capacity-block-reserved", "h100-sxm-aws-capacity-block-reserved",
                        "h100-sxm-nebius-preemptible-spot", "h200-sxm-aws-capacity-block-reserved",
                        "mi300x-crusoe-spot"]
    for p in cat.prices.values():
        if p.pricing == "on-demand":
            assert p.on_demand_ref is None and p.unpaired_reason is None, p.id


def test_azure_rows_are_the_snapshot_figures_per_gpu(cat) -> None:
    """Per-GPU figures from the azure-pricing-radar snapshot of 2026-08-20 (Linux meters), by hand:
    NC40ads H100 v5 (1 x H100 NVL, North Europe) pay-as-you-go 8.376, 1-year savings plan
    6.9679944 (1 - 6.968 / 8.376 = 16.8% off), Spot 1.547885 (81.5% off); ND96amsr A100 v4
    (8 x A100 80GB, West Europe) 40.962 / 8, savings plan 35.3051478 / 8, Spot 10.65012 / 8;
    ND96isr MI300X v5 (8 GPUs, North Europe) Spot 10.64448 / 8; ND96isr H100 v5 Spot 23.620397 / 8."""
    price = {k: p.usd_per_gpu_hour for k, p in cat.prices.items()}
    assert price["h100-nvl-azure-2026-on-demand"] == pytest.approx(8.376)
    assert price["h100-nvl-azure-sp-1y-reserved"] == pytest.approx(6.9679944, abs=1e-4)
    assert price["a100-80gb-azure-2026-on-demand"] == pytest.approx(40.962 / 8, abs=1e-4)
    assert price["a100-80gb-azure-sp-1y-reserved"] == pytest.approx(35.3051478 / 8, abs=1e-4)
    assert price["a100-80gb-azure-2026-spot"] == pytest.approx(10.65012 / 8, abs=1e-4)
    assert price["mi300x-azure-2026-spot"] == pytest.approx(10.64448 / 8, abs=1e-4)
    assert price["h100-sxm-azure-2026-spot"] == pytest.approx(23.620397 / 8, abs=1e-4)
    assert cat.prices["h100-nvl-azure-sp-1y-reserved"].term_months == 12
    tiers = {t.price_id: t for t in tiers_for(cat, "h100-nvl", "azure", True, True)}
    assert {t.kind for t in tiers.values()} == {"on-demand", "reserved", "spot"}
    assert {t.provider for t in tiers.values()} == {"azure"}
    assert tiers["h100-nvl-azure-sp-1y-reserved"].discount == pytest.approx(0.1681, abs=1e-4)
    assert tiers["h100-nvl-azure-2026-spot"].discount == pytest.approx(0.8152, abs=1e-4)
    for acc, kinds in (("a100-80gb", {"on-demand", "reserved", "spot"}), ("a100-40gb", {"on-demand", "spot"}),
                       ("h100-sxm", {"on-demand", "spot"}), ("mi300x", {"on-demand", "spot"})):
        assert {t.kind for t in tiers_for(cat, acc, "Azure", True, True)} == kinds, acc


def test_no_committed_row_is_above_the_providers_cheapest_on_demand(cat) -> None:
    """Plans compare a provider's rows across regions and sources, so a reserved or spot row above
    any on-demand row of the same provider and accelerator would make `pricing: reserved` dearer
    than on-demand at that provider (issue 12). Azure's West Europe A100 40GB savings plan
    ($3.6758) is above Azure's $3.3996 on-demand row and is therefore not in the catalog."""
    for p in cat.prices.values():
        if p.pricing == "on-demand":
            continue
        rows = tiers_for(cat, p.accelerator, provider_key(p.provider), False, False)
        cheapest = min((t.usd_per_gpu_hour for t in rows if t.kind == "on-demand"), default=float("inf"))
        assert p.usd_per_gpu_hour < cheapest, p.id
    assert "a100-40gb-azure-sp-1y-reserved" not in cat.prices


BAD_PAIRS = [
    ("  on_demand_ref: h100-nvl-azure-2026-on-demand\n",
     "  on_demand_ref: h100-nvl-azure-2026-on-demand\n  unpaired_reason: no reason needed here at all\n",
     "prices[h100-nvl-azure-sp-1y-reserved].unpaired_reason: the row names on_demand_ref"),
    ("  pricing: on-demand\n  usd_per_gpu_hour: 8.376\n",
     "  pricing: on-demand\n  usd_per_gpu_hour: 8.376\n  unpaired_reason: an on-demand row needs none\n",
     "prices[h100-nvl-azure-2026-on-demand].unpaired_reason: only reserved and spot rows"),
]


@pytest.mark.parametrize("old,new,expect", BAD_PAIRS, ids=["both-fields", "on-demand-with-reason"])
def test_pairing_fields_misused_one_line_exit_2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, old: str,
                                                new: str, expect: str) -> None:
    folder = tmp_path / "catalogs"
    shutil.copytree(ROOT / "catalogs", folder)
    path = folder / "prices.yaml"
    text = path.read_text(encoding="utf-8")
    assert old in text
    path.write_text(text.replace(old, new, 1), encoding="utf-8")
    monkeypatch.setenv("FLEETPLAN_CATALOG_DIR", str(folder))
    res = CliRunner().invoke(main, ["catalog", "validate"])
    assert res.exit_code == 2, res.output
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and expect in lines[0], res.output
