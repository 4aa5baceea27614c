"""A built, non-editable installation finds the shipped model zoo and targets on its own."""
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_wheel_carries_models_and_targets(tmp_path):
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                            "--disable-pip-version-check", "-w", str(tmp_path / "dist"), str(ROOT)],
                           capture_output=True, text=True, timeout=600)
    assert build.returncode == 0, build.stdout + build.stderr
    (wheel,) = (tmp_path / "dist").glob("snncompile-*.whl")
    site = tmp_path / "site"
    with zipfile.ZipFile(wheel) as zf:  # a pure-Python wheel installs by unpacking
        names = zf.namelist()
        zf.extractall(site)
    assert "snncompile/_shipped/models/statten-digits.yaml" in names
    assert "snncompile/_shipped/models/statten_digits.pt" in names
    assert "snncompile/_shipped/targets/README.md" in names

    probe = ("import snncompile, pathlib\n"
             "from snncompile.resources import shipped_dir\n"
             "from snncompile.zoo.registry import DEFAULT_MODEL, find_entry\n"
             "assert pathlib.Path(snncompile.__file__).is_relative_to(pathlib.Path.cwd()), snncompile.__file__\n"
             "entry = find_entry(DEFAULT_MODEL)\n"
             "print(shipped_dir('models'), entry.checkpoint, snncompile.load_checkpoint(entry.checkpoint).metrics['test_accuracy'])\n")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=site, timeout=300,
                         env={**os.environ, "PYTHONPATH": str(site)})
    assert out.returncode == 0, out.stdout + out.stderr
    models_dir, checkpoint, _ = out.stdout.split()
    assert Path(models_dir) == site / "snncompile" / "_shipped" / "models"
    assert Path(checkpoint).parent == Path(models_dir)
