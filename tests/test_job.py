"""The main job's named steps: what each gives on the default model, and the clock that names and times them."""
import pytest
from torch.utils.data import Subset

import snncompile
from snncompile.backends.placement import place
from snncompile.data import load_dataset
from snncompile.ir import io as ir_io
from snncompile.job import CompileRecord, ModelSource
from snncompile.job import steps
from snncompile.passes import lower_to_loihi
from snncompile.sim.dataset import graph_feeds
from snncompile.targets import load_target
from snncompile.zoo.registry import DEFAULT_MODEL, find_entry

CALIBRATION = 16


@pytest.fixture(scope="module")
def model():
    entry = find_entry(DEFAULT_MODEL)
    loaded = snncompile.load_checkpoint(entry.checkpoint)
    train_set, test_set = (load_dataset(entry.data, entry.model, split) for split in ("train", "test"))
    return loaded, train_set, test_set


@pytest.fixture(scope="module")
def compiled(model):
    loaded, train_set, _ = model
    record = CompileRecord(ModelSource.of(loaded), "loihi2", CALIBRATION)
    return steps.compile_graph(steps.export(loaded), train_set, record)


def test_the_clock_names_each_step_as_it_starts_and_keeps_its_time():
    told = []
    clock = steps.Clock(told.append)
    assert clock("first", lambda: told + ["ran"]) == ["first", "ran"]
    clock("second", lambda: None)
    assert told == ["first", "second"] and list(clock.seconds) == ["first", "second"]
    assert all(isinstance(s, float) and s >= 0 for s in clock.seconds.values())


def test_compile_graph_lowers_on_the_first_training_samples_and_places_for_the_record(model, compiled):
    loaded, train_set, _ = model
    graph = steps.export(loaded)
    x = steps.first_samples(train_set, CALIBRATION)
    assert x.shape[0] == CALIBRATION and steps.first_samples(Subset(train_set, range(3)), CALIBRATION).shape[0] == 3
    direct = lower_to_loihi(graph, graph_feeds(graph, x), target="loihi2")
    assert ir_io.graph_digest(compiled.graph) == ir_io.graph_digest(direct)
    assert compiled.placement.to_json() == place(direct, "loihi2").to_json()
    assert compiled.record.source.model == str(loaded.path) and compiled.record.source.dataset == "digits"


def test_check_rules_uses_the_chips_the_record_allows(compiled):
    chip = load_target("loihi2")
    assert steps.check_rules(compiled, chip) == []
    no_chip = type(compiled)(compiled.graph, compiled.placement,
                             CompileRecord(compiled.record.source, "loihi2", CALIBRATION, max_chips=0))
    found = steps.check_rules(no_chip, chip)
    assert found and {v.rule for v in found} == {"cores_fit_on_max_chips"}


def test_count_and_price_give_the_reports_counts_latency_and_energy(model, compiled):
    _, _, test_set = model
    chip = load_target("loihi2")
    counts = steps.count(compiled, chip, steps.first_samples(test_set, 4))
    assert counts.table == counts.activity.to_dict() and counts.table["samples"] == 4
    assert counts.table["totals"]["attention_accumulates"] > 0
    estimate = steps.price(counts, chip)
    assert set(estimate.energy) == {"loihi2", "cmos45", "ann"} and estimate.latency.per_sample_ns > 0
    assert estimate.energy["loihi2"].total_pj > estimate.energy["cmos45"].total_pj > 0
