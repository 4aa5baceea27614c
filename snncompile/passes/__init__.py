"""Graph-to-graph passes and the pipelines that chain them (see ``pipeline.py`` for the contract).

``PIPELINES`` holds the canned pipelines as explicit tuples of :class:`Pass` objects (never names):

- ``float``: BatchNorm folding only (the float graph a GPU or ONNX runtime would run);
- ``loihi``: the whole lowering to the integer graph a Loihi-style target runs, stage by stage:
  fold BatchNorm, merge chains of convolutions with no neuron between them (sdt-v2's RepConv, SepConv), normalise neurons to CUBA form, lower attention to integer accumulates, fold SDT-V3's level norms and
  lower its attention (``lower_levels``), quantise
  (Loihi LIF, 8-bit synapses, integer sums), split convolutions whose compartments read more input axons than a
  core receives into relayed partial sums, prove every integer width, schedule for a time-stepped target.
"""
from typing import Mapping

from ..ir import Graph
from .fold_batchnorm import fold_batchnorm
from .fold_linear_chains import fold_linear_chains
from .lower_attention import lower_attention
from .multilevel import lower_levels
from .normalize_neurons import normalize_neurons
from .pipeline import Alignment, Pass, PassContext, PassError, Reported, as_pass, run_pipeline, to_fixpoint
from .prove_ranges import prove_ranges
from .quantize import QuantizeError, quantize
from .rewrite import Edit, RewriteError, apply_edit, rewrite_graph
from .schedule import schedule
from .split_fan_in import split_fan_in
from .verify import VerificationError, compare_graphs, verify_pipeline

PIPELINES: dict[str, tuple[Pass, ...]] = {
    "float": (fold_batchnorm,),
    "loihi": (fold_batchnorm, fold_linear_chains, normalize_neurons, lower_attention, lower_levels, quantize, split_fan_in,
              prove_ranges,
              schedule),
}


def lower_to_loihi(graph: Graph, calibration: Mapping[str, object] | None = None, *, target: str | None = None,
                   options: Mapping[str, Mapping[str, object]] | None = None, **pipeline_kw) -> Graph:
    """The ``loihi`` pipeline on an exported float graph: the scheduled integer graph. ``calibration``:
    feeds (``run_graph`` style) for the scales chosen from data (real-valued inputs, A2OS2A's K)."""
    ctx = PassContext(calibration=calibration, target=target, options=options or {})
    return run_pipeline(graph, PIPELINES["loihi"], ctx, **pipeline_kw)

__all__ = ["PIPELINES", "lower_to_loihi", "Pass", "PassContext", "PassError", "Reported", "as_pass", "run_pipeline",
           "to_fixpoint",
           "fold_batchnorm", "fold_linear_chains", "normalize_neurons", "lower_attention", "lower_levels", "quantize", "QuantizeError", "prove_ranges",
           "schedule", "split_fan_in", "Edit", "RewriteError", "apply_edit", "rewrite_graph", "Alignment",
           "VerificationError", "compare_graphs", "verify_pipeline"]
