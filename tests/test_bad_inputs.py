"""The bad-input gallery: every file in tests/bad_inputs/ is refused by ``fleetplan check`` with
exit code 2 and one line per problem, each naming the file, one of them containing the expected
text; never a traceback.
Hostile files (anchor bombs, deep nesting, endless and huge files) also run in a child process
under a memory limit and a timeout, so a regression cannot hang or exhaust the test machine."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from solver.cli import main
from solver.loading import MAX_FILE_BYTES

GALLERY = Path(__file__).resolve().parent / "bad_inputs"
ROOT = GALLERY.parent.parent


def _cases() -> list[tuple[str, str]]:
    out = []
    for line in (GALLERY / "expected.tsv").read_text(encoding="utf-8").splitlines():
        if line and not line.startswith("#"):
            name, expect = line.split("\t", 1)
            out.append((name, expect))
    return out


CASES = _cases()


def test_gallery_is_complete() -> None:
    """At least 60 cases, every file listed and every listed file present."""
    files = {p.name for p in GALLERY.iterdir() if p.name != "expected.tsv"}
    listed = {name for name, _ in CASES}
    assert len(CASES) >= 60
    assert files == listed


def _one_error_line(output: str) -> str:
    lines = [ln for ln in output.splitlines() if ln.strip()]
    assert len(lines) == 1, output
    assert "Traceback" not in output
    return lines[0]


@pytest.mark.parametrize("name,expect", CASES, ids=[c[0] for c in CASES])
def test_bad_file_one_line_exit_2(name: str, expect: str) -> None:
    path = GALLERY / name
    res = CliRunner().invoke(main, ["check", str(path)])
    assert res.exit_code == 2, res.output
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert "Traceback" not in res.output
    assert all(ln.startswith(f"error: {path}: ") for ln in lines), res.output
    assert any(expect in ln for ln in lines), res.output


@pytest.mark.parametrize("name", ["hostile-python-object.yaml", "hostile-deep-list.yaml"])
def test_bad_file_json_mode_exit_2(name: str) -> None:
    """--json changes nothing about bad input: one line on stderr, exit 2."""
    res = CliRunner().invoke(main, ["check", str(GALLERY / name), "--json"])
    assert res.exit_code == 2 and "Traceback" not in res.output


def _run_limited(args: list[str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """``fleetplan ARGS`` in a child with 2 GB of address space and a timeout."""
    limit = (
        "import resource, sys; resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30)); "
        "from solver.cli import main; sys.argv = ['fleetplan'] + sys.argv[1:]; main()"
    )
    return subprocess.run([sys.executable, "-c", limit, *args], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT)


def test_hostile_files_bounded_in_child_process(tmp_path: Path) -> None:
    """Anchor bomb, deep nesting, /dev/zero and a file over the size limit (made here) are each
    refused with exit 2 and one line, within the memory limit and timeout."""
    big = tmp_path / "big.yaml"
    with open(big, "w", encoding="utf-8") as fh:
        fh.write("name: big\ndescription: '")
        chunk = "x" * 1_000_000
        for _ in range(MAX_FILE_BYTES // len(chunk) + 1):
            fh.write(chunk)
        fh.write("'\n")
    targets = [(GALLERY / "hostile-anchor-bomb.yaml", "anchors and aliases"),
               (GALLERY / "hostile-deep-list.yaml", "nested deeper"),
               (big, "larger than the 10 MB limit")]
    if os.path.exists("/dev/zero"):
        targets.append((Path("/dev/zero"), "larger than the 10 MB limit"))
    for path, expect in targets:
        res = _run_limited(["check", str(path)])
        assert res.returncode == 2, (path, res.stderr[-2000:])
        line = _one_error_line(res.stderr)
        assert expect in line, line
        assert res.stdout == ""


CATALOG_CASES = [
    ("prices.yaml", "usd_per_gpu_hour: 3.99", "usd_per_gpu_hour: .inf", "Input should be a finite number"),
    ("prices.yaml", "usd_per_gpu_hour: 3.99", "usd_per_gpu_hour: .nan", "Input should be a finite number"),
    ("accelerators.yaml", "hbm_tb_s: 0.6", "hbm_tb_s: -0.6", "Input should be greater than 0"),
    ("accelerators.yaml", "accelerators:", "accelerators: &x\n  - *x\nold:", "nested deeper than 32 levels"),
]


@pytest.mark.parametrize("file,old,new,expect", CATALOG_CASES, ids=[f"{c[0]}:{c[2][:20]}" for c in CATALOG_CASES])
def test_bad_catalog_one_line_exit_2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, file: str, old: str,
                                     new: str, expect: str) -> None:
    folder = tmp_path / "catalogs"
    shutil.copytree(ROOT / "catalogs", folder)
    text = (folder / file).read_text(encoding="utf-8")
    assert old in text
    (folder / file).write_text(text.replace(old, new, 1), encoding="utf-8")
    monkeypatch.setenv("FLEETPLAN_CATALOG_DIR", str(folder))
    res = CliRunner().invoke(main, ["catalog", "validate"])
    assert res.exit_code == 2, res.output
    assert expect in _one_error_line(res.output)


@pytest.mark.parametrize("text,expect", [("[" * 100_000 + "]" * 100_000, "nested deeper than 32 levels"),
                                         ("[" * 50 + "]" * 50, "nested deeper than 32 levels"),
                                         ('{"a": 1e999}', "")])
def test_hostile_config_json_one_line_exit_2(tmp_path: Path, text: str, expect: str) -> None:
    """catalog import-hf reads user JSON under the same limits (deep nesting was a RecursionError)."""
    path = tmp_path / "config.json"
    path.write_text(text)
    res = CliRunner().invoke(main, ["catalog", "import-hf", str(path), "--id", "x"])
    assert res.exit_code == 2, res.output
    assert expect in _one_error_line(res.output)
