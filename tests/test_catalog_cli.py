"""CLI: catalog list/show/validate, JSON shape, helpful errors for unknown kinds and ids."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from solver.catalog import KINDS, catalog_dir, load_catalog
from solver.cli import main


def run(args: list[str], **env: str):
    return CliRunner().invoke(main, args, env=env or None)


@pytest.mark.parametrize("kind", KINDS)
def test_list_json_has_ids(kind: str) -> None:
    res = run(["catalog", "list", kind, "--json"])
    assert res.exit_code == 0, res.output
    rows = json.loads(res.output)
    assert rows and all("id" in r for r in rows)
    assert [r["id"] for r in rows] == sorted(r["id"] for r in rows)


def test_list_text_table() -> None:
    res = run(["catalog", "list", "accelerators"])
    assert res.exit_code == 0
    assert "h100-sxm" in res.output and "hbm_gib" in res.output.splitlines()[0]


def test_show_accelerator_derives_support() -> None:
    res = run(["catalog", "show", "accelerator", "h100-sxm", "--json"])
    row = json.loads(res.output)
    assert row["id"] == "h100-sxm" and row["quantizations"]["fp8"] == "native"
    assert "hgx-h100-8" in row["systems"]
    assert row["source"]


def test_show_unknown_id_suggests() -> None:
    res = run(["catalog", "show", "models", "llama-3.1-7b"])
    assert res.exit_code == 2
    assert "closest valid ids: llama-3.1-70b" in res.output
    assert "Traceback" not in res.output


def test_unknown_kind() -> None:
    res = run(["catalog", "list", "gpux"])
    assert res.exit_code == 2 and "unknown catalog kind" in res.output


def test_validate_counts() -> None:
    res = run(["catalog", "validate", "--json"])
    out = json.loads(res.output)
    assert out["ok"] and out["counts"]["models"] >= 22 and out["counts"]["accelerators"] >= 17


def test_broken_catalog_is_one_line(tmp_path: Path) -> None:
    folder = tmp_path / "cat"
    shutil.copytree(catalog_dir(), folder)
    text = (folder / "accelerators.yaml").read_text().replace("hbm_tb_s: 3.35", "hbm_tb_s: -3.35", 1)
    (folder / "accelerators.yaml").write_text(text)
    res = run(["catalog", "validate"], FLEETPLAN_CATALOG_DIR=str(folder))
    assert res.exit_code == 2
    assert "accelerators[h100-sxm]" in res.output and "hbm_tb_s" in res.output
    assert len(res.output.strip().splitlines()) == 1


def test_catalog_is_read_only() -> None:
    cat = load_catalog()
    with pytest.raises(TypeError):
        cat.models["x"] = cat.models["llama-3.1-8b"]  # type: ignore[index]
    with pytest.raises(Exception):
        cat.models["llama-3.1-8b"].num_layers = 1  # type: ignore[misc]
