"""The command line, run as a user runs it (a subprocess), including its error paths."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import snncompile
from snncompile.zoo.registry import DEFAULT_MODEL, find_entry

ROOT = Path(__file__).resolve().parents[1]


def cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "snncompile", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, timeout=600, env={"PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1",
                                                      "COLUMNS": "200"})


def test_help_lists_commands():
    out = cli("--help")
    assert out.returncode == 0
    for command in ("models", "train", "evaluate", "run"):
        assert command in out.stdout


def test_models_lists_the_zoo_with_recorded_accuracy():
    out = cli("models")
    assert out.returncode == 0, out.stderr
    assert DEFAULT_MODEL in out.stdout and "statten_digits.pt" in out.stdout
    recorded = json.loads((ROOT / "models" / "statten_digits.json").read_text())["test_accuracy"]
    assert f"{recorded:.2%}" in out.stdout


@pytest.mark.slow
def test_run_default_model_reports_accuracy_and_spiking_activity():
    out = cli("run", "--samples", "16")
    assert out.returncode == 0, out.stderr
    recorded = snncompile.load_checkpoint(find_entry(DEFAULT_MODEL).checkpoint).metrics["test_accuracy"]
    assert f"float test accuracy {recorded:.2%}" in " ".join(out.stdout.split())
    assert "block.1.attn.attn_lif" in out.stdout and "head_lif" in out.stdout


def test_unknown_model_is_a_clear_error_not_a_traceback():
    out = cli("run", "no-such-model")
    assert out.returncode == 2
    assert "no model named 'no-such-model'" in out.stdout and "Traceback" not in out.stdout + out.stderr


def test_corrupt_checkpoint_is_a_clear_error(tmp_path):
    bad = tmp_path / "broken.pt"
    bad.write_bytes(b"definitely not a checkpoint")
    out = cli("evaluate", bad)
    assert out.returncode == 2
    assert "broken.pt" in out.stdout and "Traceback" not in out.stdout + out.stderr


def test_zoo_model_without_weights_says_how_to_get_them():
    out = cli("run", "statten-cifar10-2-256")
    assert out.returncode == 2
    assert "ships no trained weights" in out.stdout


def test_train_writes_a_loadable_checkpoint_with_metrics(tmp_path):
    config = yaml.safe_load((ROOT / "models" / "statten-digits.yaml").read_text())
    config.pop("checkpoint")
    config["name"] = "tiny-statten"
    config["model"].update(dim=16, num_heads=2, layers=1, img_size=8, pooling_stat="0001")
    config["train"] = {"epochs": 1, "batch_size": 128, "lr": 0.01}
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(config))
    out = cli("train", path, "-o", tmp_path / "tiny.pt")
    assert out.returncode == 0, out.stdout + out.stderr
    loaded = snncompile.load_checkpoint(tmp_path / "tiny.pt")
    assert loaded.name == "tiny-statten" and loaded.config.dim == 16
    metrics = json.loads((tmp_path / "tiny.json").read_text())
    assert metrics["epochs"] == 1 and 0.0 <= metrics["test_accuracy"] <= 1.0
    assert metrics["test_accuracy"] == loaded.metrics["test_accuracy"]
