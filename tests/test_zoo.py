"""The shipped model zoo: every config validates, every shipped checkpoint meets its target accuracy,
is small, records its metrics consistently, and re-evaluates to exactly the recorded accuracy."""
import json

import pytest
import torch

import snncompile
from snncompile.data import load_dataset
from snncompile.resources import shipped_dir
from snncompile.train.trainer import evaluate
from snncompile.zoo.registry import DEFAULT_MODEL, find_entry, list_entries

ENTRIES = list_entries()
SHIPPED = [e for e in ENTRIES if e.checkpoint is not None]
TARGET = {"digits": 0.95, "event-digits": 0.90}  # issue: >= 95 % static, >= 90 % event data


def test_every_yaml_in_models_is_a_valid_entry_with_a_unique_name():
    yamls = sorted(shipped_dir("models").glob("*.yaml"))
    assert len(ENTRIES) == len(yamls) >= 10
    assert len({e.name for e in ENTRIES}) == len(ENTRIES)


def test_required_models_are_shipped():
    shipped = {(e.model.attention, e.data.dataset) for e in SHIPPED}
    assert {("STAtten", "digits"), ("SDT", "digits"), ("STAtten", "event-digits")} <= shipped
    assert find_entry(DEFAULT_MODEL).checkpoint is not None


def test_upstream_config_families_are_present():
    archs = {(e.model.attention, e.model.img_size, e.model.dim, e.model.layers, e.model.time_steps, e.data.dataset)
             for e in ENTRIES}
    for family in [("STAtten", 32, 256, 2, 4, "cifar10"), ("STAtten", 32, 512, 2, 4, "cifar10"),
                   ("STAtten", 64, 256, 2, 10, "cifar10-dvs"), ("STAtten", 64, 256, 2, 16, "ncaltech101"),
                   ("STAtten", 224, 512, 8, 4, "imagenet"), ("STAtten", 224, 768, 8, 4, "imagenet")]:
        assert family in archs


@pytest.mark.parametrize("entry", SHIPPED, ids=lambda e: e.name)
def test_shipped_checkpoint_is_small_and_records_its_metrics(entry):
    assert entry.checkpoint.stat().st_size <= 5 * 2 ** 20
    loaded = snncompile.load_checkpoint(entry.checkpoint)
    assert loaded.name == entry.name and loaded.config == entry.model
    sidecar = json.loads(entry.checkpoint.with_suffix(".json").read_text())
    assert sidecar["model"] == entry.name
    assert sidecar["test_accuracy"] == loaded.metrics["test_accuracy"] >= TARGET[entry.data.dataset]


@pytest.mark.slow
@pytest.mark.parametrize("entry", SHIPPED, ids=lambda e: e.name)
def test_shipped_checkpoint_reevaluates_to_the_recorded_accuracy(entry):
    loaded = snncompile.load_checkpoint(entry.checkpoint)
    accuracy = evaluate(loaded.model, load_dataset(entry.data, entry.model, "test"), batch_size=360)
    assert accuracy == pytest.approx(loaded.metrics["test_accuracy"], abs=1e-9)
