"""The catalogs load from a built wheel installed into a separate virtual environment."""

from __future__ import annotations

import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_wheel_install_loads_catalogs(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(dist), str(ROOT)],
        check=True, capture_output=True, text=True,
    )
    wheel = next(dist.glob("fleetplan-*.whl"))
    env_dir = tmp_path / "venv"
    # A fresh venv sees this interpreter's site-packages through a .pth line, so the dependencies
    # need no network; the wheel itself goes into the new venv, ahead of them on sys.path.
    # (Lines in a .pth only add paths: the checkout's editable-install hook is not run.)
    venv.EnvBuilder(with_pip=True).create(env_dir)
    py = env_dir / "bin" / "python"
    site_new = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                              check=True, capture_output=True, text=True).stdout.strip()
    outer = [p for p in sys.path if p.endswith("site-packages")]
    (Path(site_new) / "outer_deps.pth").write_text("\n".join(outer) + "\n")
    subprocess.run([str(py), "-m", "pip", "install", "-q", "--no-deps", "--force-reinstall", str(wheel)],
                   check=True, capture_output=True, text=True)
    env = {k: v for k, v in os.environ.items() if k not in ("FLEETPLAN_CATALOG_DIR", "PYTHONPATH")}
    # Run from an unrelated folder so nothing can fall back to the checkout's catalogs/.
    out = subprocess.run([str(env_dir / "bin" / "fleetplan"), "catalog", "validate", "--json"],
                         cwd=tmp_path, env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "_catalogs" in out.stdout and str(ROOT) not in out.stdout
    import json

    report = json.loads(out.stdout)
    assert report["counts"]["models"] >= 20 and report["counts"]["accelerators"] >= 17
