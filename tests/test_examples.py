"""The scripts in ``examples/`` run as a user runs them (``main(argv)``, small sizes) and do what they say:
an upstream-format checkpoint to a report, a NIR file on Lava spike for spike, a custom transformer trained,
compiled and reported."""
from __future__ import annotations

import argparse
import importlib.util
import json
from pathlib import Path

import pytest
import torch

from snncompile.config import load_entry_file
from snncompile.ir import io as ir_io
from snncompile.job import SCHEMA
from snncompile.zoo.torchfile import read_torch_file

from conftest import shared_path

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
SMALL = ["--samples", "8", "--lava-samples", "2"]


def example(name: str):
    """Import ``examples/<name>.py`` as a module (examples are scripts, not a package)."""
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def read_report(path) -> dict:
    report = json.loads(Path(path).read_text())
    assert report["schema"] == SCHEMA
    assert report["lava"]["total"] == 2 and report["lava"]["identical_to_reference"] == 2
    assert report["placement"]["cores"] > 0 and report["violations"] == []
    assert report["energy"][report["target"]]["total_pj"] > 0
    return report


def test_every_example_is_documented():
    scripts = sorted(p.name for p in EXAMPLES.glob("*.py"))
    readme = (EXAMPLES / "README.md").read_text()
    assert scripts and all(f"python examples/{s}" in readme for s in scripts)
    for s in scripts:
        assert example(s[:-3]).__doc__.count("python examples/") >= 1, s


# -- upstream checkpoint -> report -----------------------------------------------------------------

@pytest.mark.slow
def test_upstream_demo_checkpoint_to_report(tmp_path, capsys):
    report, loaded = example("upstream_checkpoint_report").main(["--out-dir", str(tmp_path), *SMALL])
    written = read_torch_file(tmp_path / "model_best.pth.tar")  # what timm's CheckpointSaver writes
    assert {"epoch", "arch", "state_dict", "args", "metric"} <= set(written)
    assert isinstance(written["args"], argparse.Namespace) and written["args"].attention_mode == "STAtten"
    assert loaded.source == "upstream" and loaded.config.attention == "STAtten"
    assert loaded.config.time_steps == written["args"].time_steps and loaded.config.dim == written["args"].dim
    data = read_report(tmp_path / "model_best-STAtten.report.json")
    assert data["model"] == "model_best-STAtten" == report.model
    assert data["test_samples"] == 360 and data["float_accuracy"] > 0.95 and data["integer_accuracy"] > 0.95
    assert "report: " + str(tmp_path / "model_best-STAtten.report.json") in capsys.readouterr().out


@pytest.mark.slow
def test_upstream_checkpoint_path_with_dataset_and_limit(tmp_path, capsys):
    module = example("upstream_checkpoint_report")
    path = module.write_demo_checkpoint(tmp_path / "checkpoint-24.pth.tar", "sdt")
    assert not hasattr(read_torch_file(path)["args"], "attention_mode")  # the Spike-Driven Transformer repository
    report, loaded = module.main([str(path), "--dataset", "digits", "--limit", "40", "--out-dir", str(tmp_path),
                                  *SMALL])
    assert loaded.config.attention == "SDT" and any("no attention_mode" in n for n in loaded.notes)
    data = read_report(report.files["report"])
    assert data["model"] == "checkpoint-24-SDT" and data["test_samples"] == 40
    assert data["float_accuracy"] > 0.9
    assert "note: args has no attention_mode" in capsys.readouterr().out


def test_upstream_checkpoint_without_a_dataset_asks_for_one(tmp_path, capsys):
    module = example("upstream_checkpoint_report")
    path = module.write_demo_checkpoint(tmp_path / "model_best.pth.tar", "statten")
    with pytest.raises(SystemExit):
        module.main([str(path), "--out-dir", str(tmp_path)])
    assert "pass --dataset" in capsys.readouterr().err
    assert not list(tmp_path.glob("*.report.json"))


# -- NIR -> Lava --------------------------------------------------------------------------------------

def check_nir_run(result: dict, samples: int) -> None:
    assert result["identical"] == [True] * samples
    assert result["spikes"] and all(count > 0 for count in result["spikes"].values()), result["spikes"]
    assert ir_io.load(result["compiled"]).time_steps > 0


@pytest.mark.slow
def test_nir_demo_network_on_lava(tmp_path, capsys):
    result = example("nir_to_lava").main(["--out-dir", str(tmp_path), "--samples", "3", "--timeout", "120"])
    assert result["nir_file"] == tmp_path / "demo_lif.nir"
    import nir
    assert set(nir.read(result["nir_file"]).nodes) == {"input", "fc1", "lif1", "fc2", "lif2", "output"}
    check_nir_run(result, 3)
    assert set(result["spikes"]) == {"lif1", "lif2"}
    assert "matched the reference on 3/3 samples" in capsys.readouterr().out


@pytest.mark.slow
def test_nir_sinabs_cnn_on_lava(tmp_path):
    path = shared_path("data", "nir", "cnn_sinabs.nir")
    result = example("nir_to_lava").main([str(path), "--time-steps", "4", "--samples", "2", "--timeout", "120",
                                          "--out-dir", str(tmp_path)])
    check_nir_run(result, 2)
    assert len(result["spikes"]) == 5  # IF after each of 3 convolutions and 2 dense layers
    assert result["compiled"] == tmp_path / "cnn_sinabs.loihi.snnir"


# -- custom transformer: train, compile, report ---------------------------------------------------------

@pytest.mark.slow
@pytest.mark.timeout(300)
def test_custom_transformer_trained_compiled_reported(tmp_path):
    report = example("custom_transformer").main(["--attention", "A2OS2A", "--epochs", "4", "--name", "mine",
                                                 "--out-dir", str(tmp_path), *SMALL])
    entry = load_entry_file(tmp_path / "mine.yaml")
    assert (entry.model.attention, entry.model.layers, entry.model.dim, entry.model.num_heads) == ("A2OS2A", 1, 32, 2)
    data = read_report(tmp_path / "mine.report.json")
    assert data["model"] == "mine" == report.model and data["test_samples"] == 360
    assert data["float_accuracy"] > 0.5 and data["integer_accuracy"] > 0.5  # chance is 0.1
    trained = torch.load(tmp_path / "mine.pt", weights_only=True)
    assert trained["metrics"]["test_accuracy"] == data["float_accuracy"]  # the IR reproduces the torch model
