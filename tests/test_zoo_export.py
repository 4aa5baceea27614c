"""Every zoo model through the IR: export, validate, round-trip through .snnir, run in the float
interpreter equal to torch, run in onnxruntime equal to the interpreter."""
import pytest
import torch

import snncompile
from snncompile.backends.onnx import run_onnx, to_onnx
from snncompile.data import load_dataset
from snncompile.frontend import export
from snncompile.ir import io as ir_io
from snncompile.ir import run_graph
from snncompile.nn.record import record_spikes
from snncompile.nn.backbones import build_model
from snncompile.zoo.registry import list_entries

ENTRIES = list_entries()
SHIPPED = [e for e in ENTRIES if e.checkpoint is not None and e.model.backbone == "sdt"]  # others: test_<backbone>.py
SAMPLES = 24


def _feeds(graph, x):
    (name,) = graph.inputs()
    return {name: x if graph.op(name).time == "static" else x.transpose(0, 1).contiguous()}


@pytest.mark.parametrize("entry", [e for e in ENTRIES if e.checkpoint is None and e.model.backbone == "sdt"],
                         ids=lambda e: e.name)  # other backbones' configs: in their own test files
def test_config_only_zoo_model_exports_and_validates(entry):
    torch.manual_seed(0)
    graph = export(build_model(entry.model).eval())
    assert graph.validate() is graph and graph.time_steps == entry.model.time_steps
    attention = {"SDT": "SpikeMask", "STAtten": "BlockLinearAttention",
                 "SSA": "BlockLinearAttention"}[entry.model.attention]
    assert sum(n.op.type_name() == attention for n in graph.nodes.values()) == entry.model.layers


@pytest.mark.slow
@pytest.mark.parametrize("entry", [e for e in SHIPPED if e.model.backbone == "sdt"], ids=lambda e: e.name)
def test_shipped_model_end_to_end_through_the_ir(entry, tmp_path):
    model = snncompile.load_checkpoint(entry.checkpoint).model
    test_set = load_dataset(entry.data, entry.model, "test")
    x = torch.stack([test_set[i][0] for i in range(SAMPLES)])

    graph = export(model)
    path = ir_io.save(graph, tmp_path / f"{entry.name}.snnir")
    loaded = ir_io.load(path)
    assert ir_io.graph_digest(loaded) == ir_io.graph_digest(graph)

    with torch.no_grad(), record_spikes(model) as spikes:
        logits = model(x)
    values = run_graph(loaded, _feeds(loaded, x), keep="all")
    assert torch.equal(values[loaded.outputs[0]], logits)
    for name, s in spikes.items():
        assert torch.equal(values[name].reshape(s.shape), s), name

    # onnxruntime's conv/matmul kernels round differently from torch's (about 1 ulp), which may flip a
    # spike sitting on its threshold: logits agree to float rounding and predictions exactly.
    out = run_onnx(to_onnx(loaded), _feeds(loaded, x))[loaded.outputs[0]]
    torch.testing.assert_close(out, logits, rtol=1e-4, atol=1e-4)
    assert torch.equal(out.argmax(-1), logits.argmax(-1))
