"""The main job's named steps: what each gives on the default model, and the clock that names and times them;
the compiled artifact: written and read back as one object, a missing or malformed part a one-line error."""
import dataclasses
import json

import pytest
from torch.utils.data import Subset

import snncompile
from snncompile.backends.placement import place
from snncompile.data import load_dataset
from snncompile.ir import io as ir_io
from snncompile.job import (ArtifactError, CompileRecord, ModelSource, load_compiled, load_record, record_path,
                            save_compiled)
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


def test_lava_fidelity_gives_the_stock_share_and_each_nodes_lava_classes(model, compiled):
    pytest.importorskip("lava.magma")
    _, _, test_set = model
    counts = steps.count(compiled, load_target("loihi2"), steps.first_samples(test_set, 2))
    found = steps.lava_fidelity(compiled.graph, counts)
    neurons = found["stock_share"]["neuron_updates"]
    assert neurons["fraction"] == 1.0 and neurons["total"] == (counts.table["totals"]["neuron_updates_active"]
                                                               + counts.table["totals"]["neuron_updates_inactive"])
    synaptic = found["stock_share"]["synaptic_ops"]
    assert 0 < synaptic["total"] == counts.table["totals"]["ACs"] + counts.table["totals"]["MACs"]
    assert synaptic["stock"] > 0  # the stem's synapses, their biases moved into the neurons, on Lava's Conv
    assert set(found["processes"]) == set(compiled.graph.nodes)
    assert {c["fused_model"] for c in found["processes"].values()} == {"FusedNodes", "host"}


# -- the compiled artifact -------------------------------------------------------------------------------------------

def test_a_compiled_model_reads_back_as_it_was_written(tmp_path, compiled):
    files = save_compiled(compiled, tmp_path / "sub" / "m.snnir")
    assert files == {"graph": tmp_path / "sub" / "m.snnir", "placement": tmp_path / "sub" / "m.placement.json",
                     "record": tmp_path / "sub" / "m.compile.json"} and record_path(files["graph"]) == files["record"]
    again = load_compiled(files["graph"])
    assert ir_io.graph_digest(again.graph) == ir_io.graph_digest(compiled.graph)
    assert again.placement.to_json() == compiled.placement.to_json() and again.record == compiled.record
    assert json.loads(files["record"].read_text()) == {
        "model": compiled.record.source.model, "attention": "STAtten", "dataset": "digits", "data_root": None,
        "target": "loihi2", "calibration": CALIBRATION, "max_chips": 1, "calibration_source": None}


def test_a_record_written_before_calibration_and_chips_were_kept_still_reads(tmp_path, compiled):
    files = save_compiled(compiled, tmp_path / "m.snnir")
    old = {k: v for k, v in json.loads(files["record"].read_text()).items() if k not in ("calibration", "max_chips", "calibration_source")}
    files["record"].write_text(json.dumps(old))
    assert load_record(files["graph"]) == CompileRecord(compiled.record.source, "loihi2", None, 1)


@pytest.mark.parametrize("text, why", [(None, "m.compile.json: missing; "),
                                       ("{not json", "m.compile.json: not a compile record (JSONDecodeError"),
                                       ('{"model": "x"}', "m.compile.json: not a compile record (KeyError: 'attention')"),
                                       ("[1, 2]", "m.compile.json: not a compile record (TypeError"),
                                       ('{"model": 3, "attention": null, "dataset": null, "data_root": null, '
                                        '"target": "loihi2"}', "m.compile.json: not a compile record (TypeError: model")])
def test_a_missing_or_malformed_record_is_one_line_naming_the_file(tmp_path, compiled, text, why):
    files = save_compiled(compiled, tmp_path / "m.snnir")
    if text is None:
        files["record"].unlink()
    else:
        files["record"].write_text(text)
    with pytest.raises((FileNotFoundError, ArtifactError)) as error:
        load_compiled(files["graph"])
    assert str(error.value).startswith(str(tmp_path / why.split(":")[0])) and why in str(error.value)
    assert "\n" not in str(error.value)


def test_an_artifact_is_a_snnir_file_whose_parts_agree(tmp_path, compiled):
    with pytest.raises(ArtifactError, match=r"m\.bin: a compiled graph is a \.snnir file"):
        save_compiled(compiled, tmp_path / "m.bin")
    assert not list(tmp_path.iterdir())
    elsewhere = dataclasses.replace(compiled, record=dataclasses.replace(compiled.record, target="loihi1"))
    save_compiled(elsewhere, tmp_path / "m.snnir")
    with pytest.raises(ArtifactError, match="placed for 'loihi2', but its compile record says 'loihi1'"):
        load_compiled(tmp_path / "m.snnir")


def test_compare_spikes_batch_by_batch_equals_one_run_keeping_every_value(model, compiled):
    """The per-layer rates and agreement, gathered 3 samples at a time from the neurons' outputs only, are the
    figures of one run on all samples keeping every value (the spikes' sums are exact)."""
    from snncompile.ir.timing import unschedule
    from snncompile.sim import run_graph
    loaded, _, test_set = model
    graph, x = steps.export(loaded), steps.first_samples(test_set, 7)
    a = run_graph(graph, graph_feeds(graph, x), keep="all")
    b = run_graph(unschedule(compiled.graph), graph_feeds(compiled.graph, x), keep="all")
    expected = [{"node": n, "float_rate": float(a[n].double().abs().mean()),
                 "integer_rate": float(b[n].double().abs().mean()),
                 "agreement": float((a[n].double() == b[n].double()).double().mean())}
                for n in graph.topo_order() if graph.op(n).ROLE == "neuron" and n in b]
    found = steps.compare_spikes(graph, compiled.graph, x, batch=3)
    assert found == expected and len(found) > 5
