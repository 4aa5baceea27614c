"""Shipped hardware targets load, carry the spec's figures with provenance, and bad files fail loudly."""
import dataclasses
import re
from pathlib import Path

import pytest

from snncompile.resources import shipped_dir
from snncompile.targets import SCHEMA, STATUSES, Figure, TargetError, list_targets, load_target, system_chips

LOIHI1 = (shipped_dir("targets") / "loihi1.toml").read_text()
TABLE2 = 'source = "Davies et al. 2018, IEEE Micro 38(1):82-99, Table 2"'


def test_shipped_targets_are_listed():
    assert {"cmos45", "loihi1", "loihi1-sanafe", "loihi2"} <= set(list_targets())
    assert list_targets() == sorted(list_targets())


@pytest.mark.parametrize("name", list_targets())
def test_every_figure_has_a_source_and_a_status(name):
    target = load_target(name)
    assert target.name == name and target.description
    assert target.figures(), name
    for key, fig in target.figures().items():
        assert isinstance(fig, Figure)
        assert fig.source.strip(), key
        assert fig.status in STATUSES, key
        assert fig.unit == SCHEMA[key].unit, key
        if fig.status in ("proxy", "derived"):
            assert fig.note, key
    with pytest.raises(dataclasses.FrozenInstanceError):
        target.name = "other"


def values(target, keys):
    return {k: getattr(target, k).value for k in keys}


def test_loihi1_figures_equal_the_spec():
    """lava_loihi.md §6.1 (Davies et al. 2018 Table 2, chip architecture, Frady 2020) and §4.1-4.2 (bit widths)."""
    t = load_target("loihi1")
    assert t.kind == "chip"
    assert values(t, ["cores_per_chip", "neurons_per_core", "synaptic_memory_per_core", "fan_in_axons_per_core",
                      "fan_out_axons_per_core", "tiles_per_chip", "cores_per_tile", "routing_memory_per_core"]) == {
        "cores_per_chip": 128, "neurons_per_core": 1024, "synaptic_memory_per_core": 128.0,
        "fan_in_axons_per_core": 4096, "fan_out_axons_per_core": 4096, "tiles_per_chip": 32, "cores_per_tile": 4,
        "routing_memory_per_core": 20.0}
    assert values(t, ["weight_bits", "decay_bits", "state_bits", "threshold_bits", "threshold_shift",
                      "activation_shift", "bias_mantissa_bits", "bias_exponent_bits", "input_bits",
                      "synaptic_delay_bits", "spike_message_bits", "graded_spike_payload_bits"]) == {
        "weight_bits": 8, "decay_bits": 12, "state_bits": 24, "threshold_bits": 17, "threshold_shift": 6,
        "activation_shift": 6, "bias_mantissa_bits": 13, "bias_exponent_bits": 3, "input_bits": 16,
        "synaptic_delay_bits": 6, "spike_message_bits": 32, "graded_spike_payload_bits": 0}
    assert values(t, ["synaptic_op_energy", "synaptic_update_energy", "neuron_update_energy_active",
                      "neuron_update_energy_inactive", "spike_energy_within_tile", "tile_hop_energy_ew",
                      "tile_hop_energy_ns", "static_power_per_chip"]) == {
        "synaptic_op_energy": 23.6, "synaptic_update_energy": 120.0, "neuron_update_energy_active": 81.0,
        "neuron_update_energy_inactive": 52.0, "spike_energy_within_tile": 1.7, "tile_hop_energy_ew": 3.0,
        "tile_hop_energy_ns": 4.0, "static_power_per_chip": 104.0}
    assert values(t, ["synaptic_op_time", "synaptic_update_time", "neuron_update_time_active",
                      "neuron_update_time_inactive", "spike_latency_within_tile", "tile_hop_latency_ew",
                      "tile_hop_latency_ns", "barrier_sync_time_one_tile", "barrier_sync_time_full_chip",
                      "spike_bandwidth_per_tile"]) == {
        "synaptic_op_time": 3.5, "synaptic_update_time": 6.1, "neuron_update_time_active": 8.4,
        "neuron_update_time_inactive": 5.3, "spike_latency_within_tile": 2.1, "tile_hop_latency_ew": 4.1,
        "tile_hop_latency_ns": 6.5, "barrier_sync_time_one_tile": 113.0, "barrier_sync_time_full_chip": 465.0,
        "spike_bandwidth_per_tile": 3.44}
    assert t.synaptic_op_energy.status == "pre-silicon" and "Table 2" in t.synaptic_op_energy.source
    assert t.static_power_per_chip.status == "measured" and "Frady" in t.static_power_per_chip.source
    assert t.weight_exponent_min.status == t.weight_exponent_max.status == "unverified"
    assert isinstance(t.synaptic_op_energy.value, float) and isinstance(t.neuron_update_energy_active.value, float)
    assert isinstance(t.neurons_per_core.value, int)
    assert t.mac_energy is None  # a chip gives no 45 nm convention figures


def test_loihi2_figures_equal_the_spec_and_unpublished_ones_are_proxies():
    """lava_loihi.md §6.2: tech-brief architecture figures; no published per-op table, so Loihi 1's stands in
    where Intel's PilotNet measurement calibrates nothing (``tests/test_loihi2_anchor.py`` checks the rest)."""
    t1, t2 = load_target("loihi1"), load_target("loihi2")
    assert values(t2, ["cores_per_chip", "x86_cores_per_chip", "neurons_per_core", "synaptic_memory_per_core",
                       "weight_bits", "graded_spike_payload_bits", "synaptic_delay_bits"]) == {
        "cores_per_chip": 128, "x86_cores_per_chip": 6, "neurons_per_core": 8192, "synaptic_memory_per_core": 192.0,
        "weight_bits": 8, "graded_spike_payload_bits": 32, "synaptic_delay_bits": 6}
    for key, fig in t2.figures().items():
        if SCHEMA[key].section in ("energy", "time") and fig.status != "calibrated":
            assert fig.status == "proxy", key
            assert fig.value == getattr(t1, key).value, key
            assert "Loihi 1" in fig.source, key
    for key in ("fan_in_axons_per_core", "fan_out_axons_per_core", "tiles_per_chip", "cores_per_tile", "mesh_columns",
                "state_bits", "decay_bits", "threshold_bits"):
        assert getattr(t2, key).status == "proxy", key
    assert t2.process_node is None  # Intel 4 has no nm figure in the spec


def test_cmos45_is_an_energy_convention():
    """models.md §8.1 and lava_loihi.md §6.3: E_MAC 4.6 pJ, E_AC 0.9 pJ (Horowitz 2014, 45 nm, 0.9 V)."""
    t = load_target("cmos45")
    assert t.kind == "energy-convention"
    assert values(t, ["mac_energy", "ac_energy", "process_node", "supply_voltage", "mac_energy_int8"]) == {
        "mac_energy": 4.6, "ac_energy": 0.9, "process_node": 45.0, "supply_voltage": 0.9, "mac_energy_int8": 0.23}
    assert "Horowitz" in t.mac_energy.source and "Horowitz" in t.ac_energy.source
    assert t.cores_per_chip is None and t.neurons_per_core is None and t.synaptic_op_energy is None


# -- malformed files ----------------------------------------------------------------------------------

def edit(text: str, header: str, old: str | None, new: str) -> str:
    """Replace ``old`` by ``new`` inside the ``[header]`` block (the whole block when old is None)."""
    match = re.search(rf"(?ms)^\[{re.escape(header)}\]\n.*?(?=^\[|^# -|\Z)", text)
    assert match, header
    block = match.group(0)
    if old is None:
        changed = new
    else:
        assert old in block, (header, old)
        changed = block.replace(old, new, 1)
    return text[:match.start()] + changed + text[match.end():]


def problems_of(tmp_path, text: str, name: str = "loihi1") -> tuple[str, list[str]]:
    path = tmp_path / f"{name}.toml"
    path.write_text(text)
    with pytest.raises(TargetError) as info:
        load_target(path)
    assert str(path) in str(info.value)
    assert info.value.path == path.resolve() or info.value.path == path
    return str(info.value), info.value.problems


def test_a_copy_of_a_shipped_file_loads_from_a_path(tmp_path):
    path = tmp_path / "loihi1.toml"
    path.write_text(LOIHI1)
    assert load_target(path).figures() == load_target("loihi1").figures()
    assert load_target(str(path)).path == path.resolve()
    target = load_target(path)
    assert load_target(target) is target  # a Target passes through, so every caller may take either


BAD = {
    "missing key": (("core.neurons_per_core", None, ""), "core.neurons_per_core: missing"),
    "unknown attribute": (("core.neurons_per_core", "status", 'colour = "red"\nstatus'),
                    "core.neurons_per_core.colour: unknown attribute"),
    "wrong type": (("core.neurons_per_core", "value = 1024", 'value = "1024"'),
                   "core.neurons_per_core.value: expected int, got '1024'"),
    "float for int": (("core.neurons_per_core", "value = 1024", "value = 1024.0"),
                      "core.neurons_per_core.value: expected int"),
    "negative value": (("energy.synaptic_op_energy", "value = 23.6", "value = -23.6"),
                       "energy.synaptic_op_energy.value: -23.6 is below the minimum 0"),
    "missing source": (("energy.synaptic_op_energy", TABLE2 + "\n", ""),
                       "energy.synaptic_op_energy.source: missing"),
    "empty source": (("energy.synaptic_op_energy", TABLE2, 'source = "  "'),
                     "energy.synaptic_op_energy.source: must be a non-empty string"),
    "not finite": (("energy.synaptic_op_energy", "value = 23.6", "value = nan"),
                   "energy.synaptic_op_energy.value: expected float, got nan"),
    "status not a string": (("energy.synaptic_op_energy", 'status = "pre-silicon"', 'status = ["pre-silicon"]'),
                            "energy.synaptic_op_energy.status: ['pre-silicon'] is not one of"),
    "bad status": (("energy.synaptic_op_energy", 'status = "pre-silicon"', 'status = "guess"'),
                   "energy.synaptic_op_energy.status: 'guess' is not one of"),
    "bad unit": (("energy.synaptic_op_energy", 'unit = "pJ"', 'unit = "nJ"'),
                 "energy.synaptic_op_energy.unit: 'nJ' is not the unit of this figure, 'pJ'"),
    "proxy without note": (("chip.cores_per_chip", 'status = "documented"', 'status = "proxy"'),
                           "chip.cores_per_chip.note: required when status is 'proxy'"),
    "figure not a table": (("precision.weight_bits", None, "[precision]\nweight_bits = 8\n\n"),
                           "precision.weight_bits: expected a table"),
}


@pytest.mark.parametrize("case", BAD, ids=list(BAD))
def test_each_malformed_figure_names_file_and_key(tmp_path, case):
    (header, old, new), expected = BAD[case]
    message, problems = problems_of(tmp_path, edit(LOIHI1, header, old, new))
    assert expected in message
    assert len(problems) == 1, problems


SANAFE = (shipped_dir("targets") / "loihi1-sanafe.toml").read_text()
SYNC_TABLE = "value = { 1 = 600, 2 = 1000, 4 = 1400, 29 = 1800 }"


def test_a_table_figure_reads_counts_to_values():
    figure = load_target("loihi1-sanafe").barrier_sync_time_by_tiles
    assert figure.value == {1: 600.0, 2: 1000.0, 4: 1400.0, 29: 1800.0} and figure.unit == "ns"


@pytest.mark.parametrize("bad, expected", [
    ("value = 600", "time.barrier_sync_time_by_tiles.value: expected a non-empty table of {count = value}, got 600"),
    ("value = {}", "expected a non-empty table"),
    ('value = { one = 600 }', "time.barrier_sync_time_by_tiles.value.one: the key must be a positive integer count"),
    ("value = { 0 = 600 }", "value.0: the key must be a positive integer count"),
    ('value = { 1 = -5 }', "time.barrier_sync_time_by_tiles.value.1: expected a number >= 0, got -5"),
    ('value = { 1 = "fast" }', "value.1: expected a number >= 0, got 'fast'"),
])
def test_a_malformed_table_figure_names_the_entry(tmp_path, bad, expected):
    message, problems = problems_of(tmp_path, edit(SANAFE, "time.barrier_sync_time_by_tiles", SYNC_TABLE, bad),
                                    name="loihi1-sanafe")
    assert expected in message and len(problems) == 1, problems


def test_unknown_figure_key_and_misplaced_key(tmp_path):
    extra = '\n[core.neurons_per_tile]\nvalue = 1\nunit = "neurons"\nsource = "x"\nstatus = "documented"\n'
    moved = '\n[time.weight_bits]\nvalue = 8\nunit = "bit"\nsource = "x"\nstatus = "documented"\n'
    _, problems = problems_of(tmp_path, LOIHI1 + extra + moved)
    assert problems[0].startswith("core.neurons_per_tile: unknown key (known in [core]: neurons_per_core")
    assert problems[1] == "time.weight_bits: belongs in [precision], not [time]"


def test_top_level_problems(tmp_path):
    text = LOIHI1.replace('kind = "chip"', 'kind = "gpu"\nvendor = "Intel"')
    text = text.replace('name = "loihi1"', 'name = "loihi9"')
    _, problems = problems_of(tmp_path, text + '\n[extras.thing]\nvalue = 1\n')
    assert problems == ["name: 'loihi9' must equal the file name 'loihi1'",
                        "kind: 'gpu' is not one of chip, energy-convention, system",
                        "vendor: unknown top-level key (known: name, kind, description, chip_target, and the "
                        "sections system, chip, core, precision, energy, time)",
                        "extras: unknown top-level key (known: name, kind, description, chip_target, and the "
                        "sections system, chip, core, precision, energy, time)"]


def test_a_file_with_several_problems_lists_them_all(tmp_path):
    text = edit(LOIHI1, "core.neurons_per_core", None, "")
    text = edit(text, "energy.synaptic_op_energy", 'unit = "pJ"', 'unit = "nJ"')
    text = edit(text, "energy.tile_hop_energy_ew", "value = 3.0", "value = -3.0")
    text = edit(text, "time.synaptic_op_time", 'status = "pre-silicon"', 'status = "guess"')
    text = edit(text, "precision.state_bits", 'source = "lava-nc', 'origin = "lava-nc')
    message, problems = problems_of(tmp_path, text)
    assert len(problems) == 6, problems
    for key in ("core.neurons_per_core: missing", "energy.synaptic_op_energy.unit", "energy.tile_hop_energy_ew.value",
                "time.synaptic_op_time.status", "precision.state_bits.origin: unknown attribute",
                "precision.state_bits.source: missing"):
        assert key in message, key


def test_an_energy_convention_has_no_chip_figures(tmp_path):
    text = (shipped_dir("targets") / "cmos45.toml").read_text()
    core = '\n[core.neurons_per_core]\nvalue = 1\nunit = "neurons"\nsource = "x"\nstatus = "documented"\n'
    _, problems = problems_of(tmp_path, edit(text, "energy.ac_energy", None, "") + core, name="cmos45")
    assert problems == ["core.neurons_per_core: not a figure of kind 'energy-convention' (only of chip)",
                        "energy.ac_energy: missing (required for kind 'energy-convention': "
                        "energy per fp32 accumulate, in pJ)"]


def test_named_systems_are_chip_counts_of_a_chip_target():
    for name, chips in (("kapoho-point", 8), ("hala-point", 1152)):
        system = load_target(name)
        assert (system.kind, system.chip_target, system.chips_per_system.value) == ("system", "loihi2", chips)
        assert set(system.figures()) == {"chips_per_system"}  # every per-chip figure is the chip target's
        assert system_chips(name, load_target("loihi2")) == chips
    with pytest.raises(TargetError, match="system 'hala-point' is made of 'loihi2' chips, not 'loihi1'"):
        system_chips("hala-point", load_target("loihi1"))
    with pytest.raises(TargetError, match="'loihi2' is a chip, not a system of chips"):
        system_chips("loihi2", load_target("loihi2"))


def test_a_system_names_its_chip_target_and_only_a_system_does(tmp_path):
    text = (shipped_dir("targets") / "kapoho-point.toml").read_text()
    _, problems = problems_of(tmp_path, text.replace('chip_target = "loihi2"\n', ""), name="kapoho-point")
    assert problems == ["chip_target: a system names its chip target (a non-empty string)"]
    _, problems = problems_of(tmp_path, 'chip_target = "loihi2"\n' + LOIHI1)
    assert problems == ["chip_target: only a system names a chip target"]
    core = '\n[core.neurons_per_core]\nvalue = 1\nunit = "neurons"\nsource = "x"\nstatus = "documented"\n'
    _, problems = problems_of(tmp_path, text + core, name="kapoho-point")
    assert problems == ["core.neurons_per_core: not a figure of kind 'system' (only of chip)"]


def test_unreadable_and_unknown_targets(tmp_path):
    message, _ = problems_of(tmp_path, "name = \n", name="broken")
    assert "not valid TOML" in message
    with pytest.raises(TargetError, match="cannot read"):
        load_target(tmp_path / "absent.toml")
    shipped = re.escape(", ".join(list_targets()))
    with pytest.raises(TargetError, match=rf"no shipped target 'loihi3' \(shipped: {shipped}\)"):
        load_target("loihi3")


def test_sources_cite_nothing_outside_the_repository():
    """A figure's source and note cite papers, tools and repository files, never a file a reader of the
    repository cannot open (a research note, a spec): the report page shows them."""
    root = Path(__file__).resolve().parents[1]
    for path in (root / "targets").glob("*.toml"):
        for name in re.findall(r"[\w./-]+\.md\b", path.read_text()):
            assert (root / name).exists() or (root / "targets" / name).exists(), f"{path.name} cites {name}"
