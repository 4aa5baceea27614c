"""Model YAML files as a user writes them: real-valued fields must be finite and in range (YAML's `.nan` and
`.inf` refused, naming the field), and a YAML that points to a checkpoint must describe that checkpoint's
architecture, each differing field named, never silently ignored."""
import sys
from pathlib import Path

import pytest

from snncompile import cli
from snncompile.config import ConfigError, ModelConfig, load_entry_file
from snncompile.zoo.registry import find_entry, list_entries, load_entry_checkpoint

SHIPPED = find_entry("statten-digits")


def yaml_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "mine.yaml"
    path.write_text(f"name: mine\ncheckpoint: {SHIPPED.checkpoint}\ndata:\n  dataset: digits\n{text}")
    return path


@pytest.mark.parametrize("section, text, field, message", [
    ("train", "lr: .nan", "train.lr", "must be a finite number, got nan"),
    ("train", "lr: .inf", "train.lr", "must be a finite number, got inf"),
    ("train", "lr: -.inf", "train.lr", "must be a finite number, got -inf"),
    ("train", "weight_decay: -0.1", "train.weight_decay", "must be >= 0, got -0.1"),
    ("train", "label_smoothing: 1.5", "train.label_smoothing", "must be in [0, 1), got 1.5"),
    ("train", "tet_lambda: 2", "train.tet_lambda", "must be in [0, 1], got 2.0"),
    ("train", "tet_means: .nan", "train.tet_means", "must be a finite number, got nan"),
    ("model", "ssa_scale: -0.125", "model.ssa_scale", "must be > 0, got -0.125"),
    ("model", "ternary_tau: .nan", "model.ternary_tau", "must be a finite number, got nan"),
    ("data", "test_fraction: .nan", "data.test_fraction", "must be a finite number, got nan"),
])
def test_a_real_field_that_is_not_finite_or_out_of_range_is_refused_naming_it(tmp_path, section, text, field,
                                                                              message):
    sections = {"data": ["dataset: digits"], section: []}
    sections[section].append(text)
    path = tmp_path / "bad.yaml"
    path.write_text("name: bad\n" + "".join(f"{name}:\n" + "".join(f"  {line}\n" for line in lines)
                                             for name, lines in sections.items()))
    with pytest.raises(ConfigError) as caught:
        load_entry_file(path)
    assert str(path) in str(caught.value) and f"{field}: {message}" in str(caught.value)


def test_a_nan_learning_rate_stops_train_with_one_line(tmp_path, monkeypatch, capsys):
    path = tmp_path / "nan.yaml"
    path.write_text("name: nan\ndata:\n  dataset: digits\ntrain:\n  lr: .nan\n")
    monkeypatch.setattr(sys, "argv", ["snncompile", "train", str(path), "-o", str(tmp_path / "out.pt")])
    with pytest.raises(SystemExit) as caught:
        cli.main()
    out = capsys.readouterr().err  # errors go to stderr
    assert caught.value.code == cli.EXIT_USER_ERROR and "train.lr: must be a finite number" in out
    assert "Traceback" not in out and not (tmp_path / "out.pt").exists()


def test_a_model_section_that_disagrees_with_its_checkpoint_names_every_differing_field(tmp_path):
    path = yaml_file(tmp_path, "model:\n  attention: SDT\n  dim: 32\n  num_heads: 4\n  time_steps: 4\n")
    with pytest.raises(ConfigError) as caught:
        load_entry_checkpoint(find_entry(path))
    message = str(caught.value)
    assert str(path) in message and str(SHIPPED.checkpoint) in message
    assert "model.attention: 'SDT' here, 'STAtten' in the checkpoint" in message
    assert "model.dim: 32 here, 64 in the checkpoint" in message
    assert "num_heads" not in message and "time_steps" not in message  # those agree


def test_the_cli_refuses_a_yaml_that_disagrees_with_its_checkpoint(tmp_path, monkeypatch, capsys):
    path = yaml_file(tmp_path, "model:\n  dim: 128\n")
    monkeypatch.setattr(sys, "argv", ["snncompile", "evaluate", str(path)])
    with pytest.raises(SystemExit) as caught:
        cli.main()
    out = " ".join(capsys.readouterr().err.split())
    assert caught.value.code == cli.EXIT_USER_ERROR and "model.dim: 128 here, 64 in the checkpoint" in out


def test_a_model_section_giving_part_of_the_checkpoints_architecture_loads_it(tmp_path):
    entry = find_entry(yaml_file(tmp_path, "model:\n  attention: STAtten\n  dim: 64\n  img_size: 16\n"))
    assert entry.model_fields == {"attention", "dim", "img_size"}
    assert load_entry_checkpoint(entry).config == SHIPPED.model


def test_attention_given_on_the_command_line_overrides_the_yaml_and_the_checkpoint(tmp_path):
    entry = find_entry(yaml_file(tmp_path, "model:\n  attention: SDT\n  dim: 64\n"))
    with pytest.raises(ConfigError, match="model.attention: 'SDT' here, 'STAtten' in the checkpoint"):
        load_entry_checkpoint(entry)
    assert load_entry_checkpoint(entry, attention="SDT").config.attention == "SDT"
    with pytest.raises(ConfigError, match="model.dim: 32 here, 64"):  # the other fields are still checked
        load_entry_checkpoint(find_entry(yaml_file(tmp_path, "model:\n  dim: 32\n")), attention="SDT")


def test_every_shipped_yaml_describes_its_checkpoint():
    shipped = [entry for entry in list_entries() if entry.checkpoint is not None]
    assert len(shipped) >= 6
    for entry in shipped:
        assert load_entry_checkpoint(entry).config == entry.model


def test_an_entry_without_weights_is_refused_by_name():
    with pytest.raises(ConfigError, match="'statten-cifar10-2-256' ships no trained weights"):
        load_entry_checkpoint(find_entry("statten-cifar10-2-256"))


def test_the_zoo_listing_names_each_backbones_own_attention_and_sizes():
    """QKFormer and SDT-V3 do not read the attention field, so the listing says what they compute; SDT-V3's widths
    are its four stages and its blocks those of the two attention stages."""
    qk = ModelConfig(backbone="qkformer-cifar10", attention="STAtten", dim=32, layers=3)
    v3 = ModelConfig(backbone="sdt-v3", stage_dims="16,32,64,64", stage_layers="2,1")
    sdt = ModelConfig(attention="DS2TA", dim=64, layers=2)
    assert (qk.attention_core, qk.size_summary) == ("Token-QK + SSA", "32x3")
    assert (v3.attention_core, v3.size_summary) == ("multi-level linear", "16/32/64/64x3")
    assert (sdt.attention_core, sdt.size_summary) == ("DS2TA", "64x2")
