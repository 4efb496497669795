"""Problem files: the bundled examples load; every kind of bad input is one line, exit 2."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from solver.cli import main
from solver.problem import load_problem

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "problems").glob("*.yaml"))

GOOD = {
    "name": "t",
    "models": [{
        "name": "chat",
        "model": "llama-3.1-8b",
        "traffic": {"peak_rps": 5,
                    "input_tokens": {"p50": 500, "p90": 1000, "p99": 2000},
                    "output_tokens": {"p50": 100, "p90": 200, "p99": 400}},
        "slo": {"ttft": {"max_ms": 500, "percentile": 99},
                "tpot": {"max_ms": 40, "percentile": 99},
                "e2e": {"max_ms": 20000, "percentile": 99}},
        "allowed_accelerators": ["h100-sxm"],
    }],
    "fleet": {"inventory": {"h100-sxm": 8}},
}


def run(args: list[str]):
    return CliRunner().invoke(main, args)


def write(tmp_path: Path, data: object, text: str | None = None) -> Path:
    p = tmp_path / "p.yaml"
    p.write_text(text if text is not None else yaml.safe_dump(data))
    return p


def mutate(path: tuple, value: object) -> dict:
    data = yaml.safe_load(yaml.safe_dump(GOOD))
    node = data
    for key in path[:-1]:
        node = node[key]
    if value is KeyError:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return data


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_examples_check_ok(path: Path) -> None:
    assert len(EXAMPLES) >= 3
    res = run(["check", str(path), "--json"])
    assert res.exit_code == 0, res.output
    assert '"ok": true' in res.output


def test_good_problem_percentiles(tmp_path: Path) -> None:
    prob = load_problem(write(tmp_path, GOOD))
    lengths = prob.models[0].traffic.input_tokens
    assert (lengths.percentile(50), lengths.percentile(95), lengths.percentile(99)) == (500, 2000, 2000)


def test_histogram_percentiles() -> None:
    from solver.problem import TokenLengths

    h = TokenLengths(histogram=[{"tokens": 100, "weight": 90}, {"tokens": 1000, "weight": 10}])
    assert h.percentile(50) == 100 and h.percentile(90) == 100 and h.percentile(99) == 1000
    assert h.mean() == pytest.approx(190)


BAD = [
    ("malformed", None, "models: [\n  - name: x\n    model: {oops", "malformed YAML"),
    ("missing field", mutate(("models", 0, "traffic", "peak_rps"), KeyError), None,
     "models[0:chat].traffic.peak_rps: missing required field"),
    ("unknown model", mutate(("models", 0, "model"), "llama-3.1-8"), None,
     "unknown model 'llama-3.1-8'; closest valid ids: llama-3.1-8b"),
    ("unknown gpu", mutate(("models", 0, "allowed_accelerators"), ["h100"]), None,
     "allowed_accelerators: unknown accelerator 'h100'; closest valid ids: h100-"),
    ("unknown inventory gpu", mutate(("fleet", "inventory"), {"h200": 4}), None,
     "fleet.inventory: unknown accelerator 'h200'"),
    ("negative rate", mutate(("models", 0, "traffic", "peak_rps"), -3), None,
     "peak_rps: Input should be greater than 0 (got -3)"),
    ("zero rate", mutate(("models", 0, "traffic", "peak_rps"), 0), None,
     "peak_rps: Input should be greater than 0"),
    ("percentile 100", mutate(("models", 0, "slo", "ttft", "percentile"), 100), None,
     "slo.ttft.percentile: Input should be less than 100"),
    ("percentile 0", mutate(("models", 0, "slo", "tpot", "percentile"), 0), None,
     "slo.tpot.percentile: Input should be greater than 0"),
    ("tpot above e2e", mutate(("models", 0, "slo", "e2e", "max_ms"), 30), None,
     "tpot.max_ms (40) exceeds e2e.max_ms (30)"),
    ("empty fleet", mutate(("fleet", "inventory"), {"h100-sxm": 0}), None, "inventory is empty"),
    ("no models", mutate(("models",), []), None, "models: List should have at least 1 item"),
    ("unit typo", mutate(("models", 0, "traffic", "peak_rpm"), 5), None,
     "traffic.peak_rpm: unknown field"),
    ("string rate", mutate(("models", 0, "traffic", "peak_rps"), "fast"), None, "peak_rps: Input should be a valid number"),
    ("percentiles out of order",
     mutate(("models", 0, "traffic", "input_tokens"), {"p50": 900, "p90": 100, "p99": 2000}), None,
     "p50 <= p90 <= p99"),
    ("top-level list", None, "- 1\n- 2\n", "expected a mapping"),
]


@pytest.mark.parametrize("label,data,text,expect", BAD, ids=[b[0] for b in BAD])
def test_bad_input_one_line_exit_2(tmp_path: Path, label: str, data, text, expect: str) -> None:
    path = write(tmp_path, data, text)
    res = run(["check", str(path)])
    assert res.exit_code == 2, res.output
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert len(lines) == 1, res.output
    assert "Traceback" not in res.output
    assert str(path) in lines[0]
    assert expect in lines[0], lines[0]


def test_missing_file_exit_2(tmp_path: Path) -> None:
    res = run(["check", str(tmp_path / "nope.yaml")])
    assert res.exit_code == 2 and "file not found" in res.output


def test_yaml_is_loaded_safely(tmp_path: Path) -> None:
    path = write(tmp_path, None, "name: !!python/object/apply:os.system ['echo hi']\n")
    res = run(["check", str(path)])
    assert res.exit_code == 2 and "malformed YAML" in res.output
