"""A small hand-made run report (schema /2, every optional field present) for the report tests: the shape
`snncompile run` writes, with numbers of the size a 2-layer digits model gives, without running the job."""
from snncompile.report.cost import price_nodes
from snncompile.targets import load_target

SAMPLES, STEPS = 4, 5
ATTENTION_LIF = "block.0.attn.attn_lif"


def run_report(attention_lif: str = ATTENTION_LIF) -> dict:
    """A /2 report; ``attention_lif`` names one neuron layer everywhere it appears (to test escaping)."""
    neurons = {"stem.lif": 256, attention_lif: 64, "head_lif": 10}
    spikes = {"stem.lif": [30, 52, 61, 58, 40], attention_lif: [0, 6, 9, 8, 5], "head_lif": [0, 0, 3, 5, 4]}
    active = {"stem.lif": [400, 700, 760, 740, 600], attention_lif: [0, 90, 120, 110, 80],
              "head_lif": [0, 8, 20, 30, 25]}
    synapses = {"stem.conv.host": ("Conv2d", "MAC", True, [6912], 1728),
                "block.0.attn.q_conv": ("IntConv2d", "AC", False, [0, 1500, 2600, 2900, 2300], 2304),
                "head": ("IntDense", "AC", False, [0, 0, 640, 1020, 900], 640)}
    accumulates = [0, 0, 180, 240, 210]
    time_figure = {"value": 3.5, "unit": "ns", "status": "proxy", "source": "proxy: the Loihi 1 value (test)"}
    activity = {
        "samples": SAMPLES, "time_steps": STEPS,
        "spikes": {n: {"op": "LoihiLIF", "neurons": neurons[n], "samples": SAMPLES, "timesteps": STEPS,
                       "spikes": s, "total": sum(s)} for n, s in spikes.items()},
        "synapses": {n: {"op": op, "samples": SAMPLES, "kind": kind, "connections": connections, "static": static,
                         "ops": ops, "total": sum(ops)}
                     for n, (op, kind, static, ops, connections) in synapses.items()},
        "neurons": {n: {"op": "LoihiLIF", "samples": SAMPLES, "neurons": neurons[n], "active": a,
                        "inactive": [neurons[n] * SAMPLES - x for x in a]} for n, a in active.items()},
        "attention": {"block.0.attn.core.kv": {"op": "KVOuterAccumulate", "samples": SAMPLES,
                                               "accumulates": accumulates, "total": sum(accumulates)}},
    }
    activity["totals"] = {
        "ACs": sum(sum(ops) for _, kind, static, ops, _ in synapses.values() if kind == "AC" and not static),
        "MACs": 0, "host_MACs": 6912, "attention_accumulates": sum(accumulates),
        "spikes": sum(map(sum, spikes.values())), "neuron_updates_active": sum(map(sum, active.values())),
        "neuron_updates_inactive": sum(neurons[n] * SAMPLES * STEPS - sum(a) for n, a in active.items()),
    }
    activity["node_totals"] = {
        **{n: {"spikes": sum(spikes[n]), "neuron_updates_active": sum(a),
               "neuron_updates_inactive": neurons[n] * SAMPLES * STEPS - sum(a)} for n, a in active.items()},
        **{n: {"host_MACs" if static else f"{kind}s": sum(ops)} for n, (_, kind, static, ops, _) in synapses.items()},
        "block.0.attn.core.kv": {"attention_accumulates": sum(accumulates)}}
    chip = load_target("loihi2")
    hops = {"hops_ew": 1_520.0, "hops_ns": 96.0}
    latency_figures = {"synaptic_op_time": time_figure,
                       **{f"tile_hop_energy_{d}": getattr(chip, f"tile_hop_energy_{d}").record()
                          for d in ("ew", "ns")}}
    loihi2 = price_nodes(activity, "loihi2").plus(hops, latency_figures).to_dict()
    cmos45 = price_nodes(activity, "cmos45").to_dict()
    mac = cmos45["figures"]["mac_energy"]
    ann = {"target": "cmos45 ANN", "per_sample_pj": {"ANN_MACs": 4672 * mac["value"]}, "total_pj": 4672 * mac["value"],
           "per_node_pj": {}, "figures": {"mac_energy": mac}, "unpriced": []}
    step_ns = [1_210.0, 3_480.0, 5_912.5, 6_340.0, 5_125.0]
    return {
        "schema": "snncompile-run-report/2", "model": "statten-digits", "target": "loihi2",
        "checkpoint": {"path": "models/statten_digits.pt", "format": "snncompile",
                       "config": {"attention": "STAtten", "dim": 64, "num_heads": 4, "layers": 2, "time_steps": 4},
                       "notes": []},
        "float_accuracy": 0.9861111111111112, "integer_accuracy": 0.9833333333333333, "test_samples": 360,
        "lava": {"accuracy": 1.0, "total": 8, "identical_to_reference": 8, "granularity": "fused"},
        "placement": {"cores": 3, "chips": 1, "lower_bound": 3, "lower_bound_by_resource": {
            "neurons": 3, "synaptic memory": 3, "input axons": 3, "output axons": 3, "kernels and windows": 1},
                      "per_core": [
            {"core": i, "chip": 0, "node": node, "neurons": n, "neuron_capacity": 8192, "synaptic_bytes": syn,
             "synaptic_capacity_bytes": 196608.0, "fan_in_axons": fin, "fan_in_capacity": 4096,
             "fan_out_axons": fout, "fan_out_capacity": 4096, "busy_ns": busy}
            for i, (node, n, syn, fin, fout, busy) in enumerate([("stem.lif", 256, 0, 256, 320, 9_800.0),
                                                                   (attention_lif, 64, 4608, 128, 64, 6_120.5),
                                                                   ("head_lif", 10, 1280, 64, 10, 2_450.0)])]},
        "violations": [],
        "layers": [{"node": "stem.lif", "float_rate": 0.2148, "integer_rate": 0.2140, "agreement": 0.9738},
                   {"node": attention_lif, "float_rate": 0.0501, "integer_rate": 0.0428, "agreement": 0.9775},
                   {"node": "head_lif", "float_rate": 0.4161, "integer_rate": 0.4132, "agreement": 0.9843}],
        "activity": activity,
        "energy": {"loihi2": loihi2, "cmos45": cmos45, "ann": ann},
        "latency": {"target": "loihi2", "time_steps": STEPS, "step_ns": step_ns, "per_sample_ns": sum(step_ns),
                    "per_sample_ns_min": 19_800.0, "per_sample_ns_max": 23_100.0,
                    "throughput_samples_per_s": 1e9 / sum(step_ns), "barrier_ns": 215.2,
                    "slowest_core": [0, 0, 1, 1, 0], "core_busy_ns": {"0": 9_800.0, "1": 6_120.5, "2": 2_450.0},
                    "energy_pj": hops, "figures": latency_figures, "not_modelled": []},
        "files": {"report": "runs/statten-digits.report.json", "html": "runs/statten-digits.report.html",
                  "graph": "runs/statten-digits.loihi.snnir"},
        "seconds": {"export": 0.04, "lowering": 1.7},
    }


def version_1(report: dict) -> dict:
    """``report`` as schema /1 wrote it: no per-core placement, latency, per-node counts or energy, ANN energy."""
    energy = {k: {f: v for f, v in e.items() if f != "per_node_pj"} for k, e in report["energy"].items() if k != "ann"}
    activity = {k: v for k, v in report["activity"].items() if k != "node_totals"}
    return {**{k: v for k, v in report.items() if k not in ("latency", "checkpoint")},
            "schema": "snncompile-run-report/1", "activity": activity,
            "placement": {"cores": report["placement"]["cores"], "chips": report["placement"]["chips"]},
            "energy": energy}
