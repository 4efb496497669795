"""Reports: content, escaping, bad input, infeasible explanation, staleness, browser rendering."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from solver.catalog import load_catalog
from solver.cli import main
from solver.problem import load_problem
from solver.report import make_report, write_report
from solver.report.render import to_html, to_json, to_markdown

ROOT = Path(__file__).resolve().parent.parent
PROBLEMS = sorted((ROOT / "problems").glob("*.yaml"))
CHAT = ROOT / "problems" / "chat-assistant-70b.yaml"
BROWSER_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def chat_content():
    cat = load_catalog()
    return make_report(load_problem(CHAT, cat), cat, ("ttft",), points=3)


def test_markdown_has_every_section(chat_content) -> None:
    md = to_markdown(chat_content)
    for section in ("## Problem", "## Chosen plan", "## Memory budget per GPU", "## Binding constraints",
                    "## Pareto set", "## Assumptions", "## What the model does not capture"):
        assert section in md
    assert "$/M out tok" in md and "(<= 800)" in md
    # Prices are shown with the date they were read.
    assert "read 20" in md


def test_report_carries_the_plans_guardrails(chat_content) -> None:
    """Guardrails (issue 9) reach the report: the plan JSON, and a table in Markdown and HTML
    with the queue limit, circuit breaker, warm replicas and scale-up lead time of each model."""
    g = to_json(chat_content)["plan"]["guardrails"]
    assert [x["model"] for x in g] == ["chat"]
    row = g[0]
    md = to_markdown(chat_content)
    assert "## Guardrails" in md
    line = next(ln for ln in md.splitlines() if ln.startswith("| chat |") and str(row["queue_limit"]) in ln)
    for k in ("max_input_tokens", "max_new_tokens", "circuit_breaker_queue", "min_warm_replicas"):
        assert str(row[k]) in line, k
    assert "<h2>Guardrails</h2>" in to_html(chat_content)


def test_json_schema(chat_content) -> None:
    out = to_json(chat_content)
    assert out["schema_version"] == 1
    assert out["plan"]["status"] == "optimal" and "solve_seconds" not in out["plan"]
    dep = out["deployments"][0]
    assert set(dep["memory_gib_per_gpu"]) == {"weights", "kv", "activations", "overhead", "free", "reserved"}
    mem = dep["memory_gib_per_gpu"]
    assert sum(mem.values()) == pytest.approx(dep["hbm_gib"], abs=0.05)
    assert out["pareto"]["axis"] == "ttft" and len(out["pareto"]["points"]) >= 2
    json.dumps(out, allow_nan=False)


def test_cost_per_million_tokens_matches_hand_computation(chat_content) -> None:
    # the plan may split the model over several deployments: each serves its share of the peak
    # load (load_rps out of peak x (1 + headroom)); the shares cover all the traffic
    d = chat_content.problem.models[0]
    tokens_per_hour = d.traffic.peak_rps * d.traffic.output_tokens.mean() * 3600
    served = 0.0
    for v in chat_content.deployments:
        dep = v.deployment
        share = dep.load_rps / (d.traffic.peak_rps * (1 + d.headroom))
        assert v.usd_per_million_output_tokens == pytest.approx(
            dep.cost_usd_per_hour / (share * tokens_per_hour) * 1e6, rel=1e-3)
        served += share * tokens_per_hour
    assert served == pytest.approx(tokens_per_hour, rel=1e-3)


def test_html_is_self_contained_with_plots(chat_content) -> None:
    page = to_html(chat_content)
    assert page.count("<svg") == 3 and 'id="plot-pareto"' in page and 'id="plot-memory"' in page
    # Nothing to fetch: no scripts, stylesheets or images by address (XML namespaces are names).
    for external in ('src="http', 'href="http', "<link", "<script", "@import", "url(http"):
        assert external not in page


def test_user_text_is_escaped(tmp_path: Path) -> None:
    data = yaml.safe_load(CHAT.read_text())
    data["name"] = "<script>alert('x')</script>"
    data["description"] = "a & b <b>bold</b>"
    path = tmp_path / "evil.yaml"
    path.write_text(yaml.safe_dump(data))
    cat = load_catalog()
    page = to_html(make_report(load_problem(path, cat), cat, ("ttft",), points=2))
    assert "<script>" not in page and "&lt;script&gt;" in page and "a &amp; b &lt;b&gt;" in page


def test_infeasible_problem_gets_an_explaining_report(tmp_path: Path) -> None:
    res = CliRunner().invoke(main, ["report", str(ROOT / "problems" / "impossible-latency.yaml"),
                                    "--out", str(tmp_path / "imp")])
    assert res.exit_code == 1, res.output
    md = (tmp_path / "imp.md").read_text()
    assert "No plan meets every constraint" in md and "TPOT p99 <= 4 ms" in md
    assert "TPOT p99 &lt;= 4 ms" in (tmp_path / "imp.html").read_text()


@pytest.mark.parametrize("args,expect", [
    (["--points", "1"], "--points must be >= 2"),
    (["--axis", "latency"], "unknown axis"),
    ([], "give exactly one of --out"),
])
def test_report_bad_input(tmp_path: Path, args: list[str], expect: str) -> None:
    out = [] if not args or args[0] != "--points" and args[0] != "--axis" else ["--out", str(tmp_path / "r")]
    res = CliRunner().invoke(main, ["report", str(CHAT), *out, *args])
    assert res.exit_code == 2 and expect in res.output
    assert len(res.output.strip().splitlines()) == 1


def test_unwritable_output_folder(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    res = CliRunner().invoke(main, ["report", str(CHAT), "--out", str(blocker / "sub" / "r")])
    assert res.exit_code == 2 and "cannot create folder" in res.output


def _without_svg(text: str) -> str:
    """HTML minus the SVG drawings: their bytes depend on the matplotlib version, while the data
    they draw is compared through the tables and the JSON."""
    return re.sub(r"<svg.*?</svg>", "<svg/>", text, flags=re.S)


def test_checked_in_reports_are_fresh(tmp_path: Path) -> None:
    """reports/ must be what `fleetplan report problems/*.yaml --out-dir reports` writes now."""
    res = CliRunner().invoke(main, ["report", *map(str, PROBLEMS), "--out-dir", str(tmp_path)])
    assert res.exit_code in (0, 1), res.output
    for problem in PROBLEMS:
        for ext in (".md", ".html", ".json"):
            fresh = (tmp_path / (problem.stem + ext)).read_text()
            stored = ROOT / "reports" / (problem.stem + ext)
            assert stored.exists(), f"{stored} missing: regenerate the reports"
            if ext == ".html":
                fresh, old = _without_svg(fresh), _without_svg(stored.read_text())
            else:
                old = stored.read_text()
            assert old == fresh, (
                f"{stored} is stale: run `fleetplan report problems/*.yaml --out-dir reports`")


def test_browser_renders_report(tmp_path: Path, chat_content) -> None:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("Chromium is not installed (apt-get install chromium); .ci/run installs it")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright not installed")
    write_report(chat_content, tmp_path / "chat")
    problems: list[str] = []
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=BROWSER_ARGS)
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        page.on("console", lambda m: problems.append(m.text) if m.type in ("error", "warning") else None)
        page.on("pageerror", lambda e: problems.append(str(e)))
        page.goto((tmp_path / "chat.html").as_uri())
        shot = tmp_path / "chat.png"
        page.screenshot(path=str(shot), full_page=True)
        assert page.title().startswith("fleetplan")
        plots = page.query_selector_all("figure.plot svg")
        sizes = [s.bounding_box() for s in plots]
        browser.close()
    assert problems == []
    assert len(plots) == 3 and all(b and b["width"] > 200 and b["height"] > 100 for b in sizes)
    assert shot.stat().st_size > 20_000
