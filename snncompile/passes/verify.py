"""Verify steps: run two stages of a graph on the same inputs and compare them node by node.

The models are FINN's ``verify_steps`` (run the model after chosen build steps, compare with the
previous stage) and QuantizeML's per-layer error table (SMAPE and saturation per layer, *isolated* and
*cumulative*). For every node present in both graphs:

- **cumulative**: both graphs run end to end (``run_graph(keep="all")``); the node's values are compared.
  This is the error the node sees in the deployed graph: its own plus everything upstream.
- **isolated**: the candidate node's op runs on the *reference* graph's values of its inputs; this is
  the pass's local error at that node, separated from the error propagated from upstream.

Spike outputs report the agreement (equal elements / total) and the number of differing spikes; real and
integer outputs report the max absolute error and SMAPE (``mean |a - b| / (|a| + |b|)``, 0 where both
are 0; in [0, 1]); integer outputs also report the fraction saturated at their dtype's bounds. Neurons
(role ``neuron``) also report their membrane error. An :class:`Alignment` says how a candidate's
values map onto the reference's: a factor into reference units (``candidate * scale``, quantised stages),
another for membranes, and a time offset (a scheduled node's step ``offset + t`` is the reference's step
``t``). A pass provides its alignment as its :attr:`~.pipeline.Pass.align`.

Nodes are matched by name, except where a pass replaced a node: when reference node ``R`` is gone and
every consumer that read ``R`` (and every graph output that was ``R``) now reads candidate node ``X``, then
``X`` stands for ``R`` (``fold_batchnorm``: the folded conv stands for its BatchNorm), provided both have
the same shape and time layout. Nodes present in one graph only are listed as such.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Collection, Mapping, Sequence

import torch

from ..ir import Graph
from ..ir.interpret import delayed
from ..sim import evaluate_node, run_graph
from .pipeline import Alignment, PassContext, PassError, Pass, run_pipeline


class VerificationError(PassError):
    """A stage broke its declared tolerance; ``pass_name`` and ``node`` name where it happened first."""

    def __init__(self, pass_name: str, node: str | None, message: str):
        self.node = node
        super().__init__(pass_name, message)


@dataclass(frozen=True)
class Comparison:
    """One node's values, reference against candidate (candidate scaled into reference units)."""

    bit_identical: bool                   #: exactly equal values (candidate scaled; float64 holds both exactly)
    elements: int                         #: number of compared elements
    differing: int                        #: elements that differ (for spikes: differing spikes)
    max_abs_error: float                  #: max |reference - candidate * scale|
    agreement: float | None = None        #: spikes only: equal elements / total
    smape: float | None = None            #: real and integer only: mean |a - b| / (|a| + |b|)
    saturation: float | None = None       #: integer candidate only: fraction at its dtype's min or max
    membrane_max_abs_error: float | None = None  #: neurons only: max error of the post-reset membrane
    membrane_smape: float | None = None   #: neurons only: SMAPE of the post-reset membrane


@dataclass(frozen=True)
class NodeReport:
    """One row of the node table."""

    name: str                             #: candidate node name (reference name for ``only_reference``)
    op: str                               #: node type
    status: str                           #: "matched", "only_reference" or "only_candidate"
    reference: str | None = None          #: the reference node it was compared with
    kind: str | None = None               #: "spike", "int" or "float" (the candidate's dtype kind)
    scale: float = 1.0                    #: candidate * scale is in reference units
    cumulative: Comparison | None = None
    isolated: Comparison | None = None
    note: str = ""                        #: why a node is unmatched, or a shape difference


@dataclass(frozen=True)
class Tolerance:
    """Declared tolerances for float stages (exact stages must be bit-identical)."""

    spike_agreement: float = 0.999        #: minimum cumulative agreement of every spike node
    smape: float | None = None            #: maximum cumulative SMAPE of real nodes (None: not checked)


@dataclass
class StageReport:
    index: int                            #: 0 = the input graph, i = after the i-th pass run
    pass_name: str                        #: "input" for stage 0
    accuracy: float | None = None         #: argmax of the graph output against labels, if given
    exact: bool = False                   #: declared bit-exact against the previous stage
    nodes: list[NodeReport] = field(default_factory=list)   #: against the previous stage
    violations: list[str] = field(default_factory=list)     #: broken tolerances (float stages)


@dataclass
class VerifyReport:
    samples: int
    tolerance: Tolerance
    stages: list[StageReport] = field(default_factory=list)
    graph: Graph | None = None            #: the final graph
    calibration: str | None = None        #: what the calibration feeds were (a line), as the caller said


# -- comparing values ---------------------------------------------------------------------------------

def _smape(a: torch.Tensor, b: torch.Tensor) -> float:
    den = a.abs() + b.abs()
    terms = torch.where(den > 0, (a - b).abs() / torch.where(den > 0, den, torch.ones_like(den)), 0.0)
    return float(terms.mean()) if terms.numel() else 0.0


def _compare(ref: torch.Tensor, cand: torch.Tensor, kind: str, scale: float, dtype=None,
             ref_v: torch.Tensor | None = None, cand_v: torch.Tensor | None = None,
             membrane_scale: float = 1.0) -> Comparison:
    a, b = ref.double(), cand.double() * scale
    identical = torch.equal(a, b)
    diff = (a - b).abs()
    fields = dict(bit_identical=identical, elements=a.numel(), differing=int((diff > 0).sum()),
                  max_abs_error=float(diff.max()) if diff.numel() else 0.0)
    if kind == "spike":
        fields["agreement"] = 1.0 - fields["differing"] / max(a.numel(), 1)
    else:
        fields["smape"] = _smape(a, b)
    if kind == "int" and dtype is not None:
        fields["saturation"] = float(((cand == dtype.min) | (cand == dtype.max)).double().mean())
    if ref_v is not None and cand_v is not None and ref_v.shape == cand_v.shape:
        va, vb = ref_v.double(), cand_v.double() * membrane_scale
        fields["membrane_max_abs_error"] = float((va - vb).abs().max()) if va.numel() else 0.0
        fields["membrane_smape"] = _smape(va, vb)
    return Comparison(**fields)


def _run_node(graph: Graph, name: str, args: list[torch.Tensor], types,
              membrane: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The node's output as ``run_graph`` computes it and, with ``membrane``, a neuron's post-reset
    membrane (the last of its state traces), delayed as its output."""
    op, stream = graph.op(name), types[name].time == "stream"
    with torch.no_grad():
        out, traces = evaluate_node(op, args, stream=stream, states=membrane)
    v = traces[-1] if traces else None
    return out, (delayed(v, op.delay) if v is not None and stream else v)


def _from_offset(x: torch.Tensor, offset: int, steps: int) -> torch.Tensor:
    """Steps ``offset .. offset + steps - 1`` of a stream (a scheduled node read where its data arrive)."""
    return x[offset:offset + steps]


def default_match(reference: Graph, candidate: Graph) -> dict[str, str]:
    """Candidate node -> the reference node it stands for (see the module docstring)."""
    match = {n: n for n in candidate.nodes if n in reference.nodes}
    rtypes, ctypes = reference.types(), candidate.types()
    for r in reference.nodes:
        if r in candidate.nodes:
            continue
        readers = {candidate.outputs[i] for i, o in enumerate(reference.outputs)
                   if o == r and len(candidate.outputs) == len(reference.outputs)}
        for c in reference.consumers(r):
            if c in candidate.nodes and len(candidate.nodes[c].inputs) == len(reference.nodes[c].inputs):
                readers |= {candidate.nodes[c].inputs[i] for i, s in enumerate(reference.nodes[c].inputs) if s == r}
        if len(readers) == 1:
            (x,) = readers
            same_layout = x in candidate.nodes and (ctypes[x].shape, ctypes[x].time) == (rtypes[r].shape, rtypes[r].time)
            if same_layout and match.get(x, x) == x:
                match[x] = r
    return match


def compare_graphs(reference: Graph, candidate: Graph, feeds: Mapping[str, torch.Tensor], *,
                   alignment: Alignment | None = None, match: Mapping[str, str] | None = None,
                   _values: tuple[dict, dict] | None = None) -> list[NodeReport]:
    """Compare every node of ``candidate`` with its counterpart in ``reference`` on ``feeds``.

    ``alignment``: how candidate values map onto reference values (default: identity). ``match``:
    candidate node -> reference node (default :func:`default_match`). Rows come in the candidate's
    dependency order, then the reference nodes with no counterpart. A timed alignment (a scheduling
    stage) compares each node's values from its offset on; such a stage has no local error of its own,
    so its isolated comparison is its cumulative one.
    """
    align = alignment or Alignment()
    scale = dict(align.scale)
    match = default_match(reference, candidate) if match is None else dict(match)
    ref_vals, cand_vals = _values or (run_graph(reference, feeds, keep="all"), run_graph(candidate, feeds, keep="all"))
    rtypes, ctypes = reference.types(), candidate.types()
    if align.timed:
        cand_vals = {n: _from_offset(v, align.offset.get(n, 0), reference.time_steps)
                     if ctypes[n].time == "stream" else v for n, v in cand_vals.items()}
    context: dict[str, torch.Tensor] = {}  # candidate node -> its value computed from reference values

    def in_context(s: str) -> torch.Tensor:
        if s not in context:
            k = scale.get(s, 1.0)
            if s in match:  # reference values in the candidate's units (integers rounded)
                v = ref_vals[match[s]] if k == 1.0 else ref_vals[match[s]] / k
                integer = ctypes[s].dtype.kind == "int" and v.is_floating_point()
                context[s] = v.round().to(torch.int64) if integer else v
            elif candidate.nodes[s].inputs:
                args = [in_context(i) for i in candidate.nodes[s].inputs]
                context[s] = _run_node(candidate, s, args, ctypes)[0]
            else:
                context[s] = cand_vals[s]
        return context[s]

    def membrane(graph: Graph, name: str, values, types) -> torch.Tensor:
        v = _run_node(graph, name, [values[i] for i in graph.nodes[name].inputs], types, True)[1]
        return v if graph is reference or not align.timed else _from_offset(v, 0, reference.time_steps)

    rows = []
    for c in candidate.topo_order():
        op, ct = candidate.op(c), ctypes[c]
        kind = "spike" if ct.dtype.is_spike else ct.dtype.kind
        if c not in match:
            rows.append(NodeReport(c, op.type_name(), "only_candidate", kind=kind, note="not in the reference"))
            continue
        r, k = match[c], scale.get(c, 1.0)
        if rtypes[r].shape != ct.shape or ref_vals[r].shape != cand_vals[c].shape:
            rows.append(NodeReport(c, op.type_name(), "matched", r, kind, k,
                                   note=f"shape {tuple(ref_vals[r].shape)} vs {tuple(cand_vals[c].shape)}"))
            continue
        neuron = op.ROLE == "neuron" and reference.op(r).ROLE == "neuron"
        ref_v = membrane(reference, r, ref_vals, rtypes) if neuron else None
        mk = align.membrane_scale.get(c, k)
        cum = _compare(ref_vals[r], cand_vals[c], kind, k, ct.dtype, ref_v,
                       membrane(candidate, c, cand_vals, ctypes) if neuron else None, mk)
        if candidate.nodes[c].inputs and not align.timed:
            iso_out, iso_v = _run_node(candidate, c, [in_context(i) for i in candidate.nodes[c].inputs], ctypes,
                                       neuron)
            iso = _compare(ref_vals[r], iso_out, kind, k, ct.dtype, ref_v, iso_v, mk)
        else:
            iso = cum
        rows.append(NodeReport(c, op.type_name(), "matched", r, kind, k, cum, iso))
    compared = set(match.values())
    for r in reference.topo_order():
        if r not in compared:
            note = (f"its name now stands for {match[r]!r}" if match.get(r, r) != r
                    else "not in the candidate")
            rows.append(NodeReport(r, reference.op(r).type_name(), "only_reference", note=note))
    return rows


# -- a pipeline, stage by stage -----------------------------------------------------------------------

def accuracy(output: torch.Tensor, labels: torch.Tensor) -> float:
    """Fraction of samples whose argmax over classes (last axis) is the label; a stream ``[T, B, C]`` is
    averaged over time first."""
    scores = output if output.dim() == 2 else output.double().mean(0)
    return float((scores.argmax(-1) == labels.to(scores.device)).double().mean())


def _check(stage: StageReport, tol: Tolerance) -> list[tuple[str, str, bool]]:
    """(node, message, always raises) for every broken tolerance, in row order."""
    problems = []
    for row in stage.nodes:
        if row.status != "matched":
            continue
        c = row.cumulative
        if c is None:
            problems.append((row.name, f"node {row.name!r}: {row.note}", True))
        elif stage.exact and not c.bit_identical:
            problems.append((row.name, f"node {row.name!r} ({row.op}) is not bit-identical to reference "
                                       f"{row.reference!r}: {c.differing} of {c.elements} elements differ, "
                                       f"max error {c.max_abs_error:.6g}", True))
        elif not stage.exact and c.agreement is not None and c.agreement < tol.spike_agreement:
            problems.append((row.name, f"node {row.name!r}: spike agreement {c.agreement:.6f} < "
                                       f"{tol.spike_agreement} ({c.differing} spikes differ)", False))
        elif not stage.exact and tol.smape is not None and c.smape is not None and c.smape > tol.smape:
            problems.append((row.name, f"node {row.name!r}: SMAPE {c.smape:.6g} > {tol.smape}", False))
    return problems


def verify_pipeline(graph: Graph, steps: Sequence[Pass], ctx: PassContext | None, feeds: Mapping[str, torch.Tensor],
                    labels: torch.Tensor | None = None, *, exact: Collection[str] = (),
                    tolerance: Tolerance = Tolerance(), strict: bool = False, calibration: str | None = None,
                    **pipeline_kw) -> VerifyReport:
    """Run ``steps`` with :func:`run_pipeline`, comparing every stage with the previous one on ``feeds``.

    Stage 0 is the input graph (accuracy only). A stage is *exact* when its pass is named in ``exact`` or
    is declared exact (``Pass.exact``): every matched node must then be bit-identical, and the first that is
    not raises :class:`VerificationError` naming the pass and the node. Other stages are checked against
    ``tolerance`` and their violations recorded; with ``strict`` the first one raises. A shape difference
    always raises. A pass's ``align(before, after)``, if any, gives the stage's :class:`Alignment`; its
    ``float_view(after)``, if any, adds a stage before it: the pass's result computed in float
    (``quantize``: the quantised-float graph), so the float -> quantised-float -> integer steps are
    compared one by one.
    ``labels``: per-sample class indices for stage accuracies. ``calibration``: where ``ctx.calibration``
    came from (``snncompile.data.calibration``'s source line), kept in the report beside the stages whose
    scales it chose. ``pipeline_kw`` goes to ``run_pipeline``.
    """
    first_input = graph.inputs()[0]
    batch_axis = 0 if graph.types()[first_input].time == "static" else 1
    report = VerifyReport(samples=feeds[first_input].shape[batch_axis], tolerance=tolerance, calibration=calibration)
    # the last stage run (the next step's input) and its values, so each stage runs once
    last: tuple[Graph, dict] = (graph, run_graph(graph, feeds, keep="all"))

    def stage_accuracy(g: Graph, vals) -> float | None:
        return None if labels is None else accuracy(vals[g.outputs[0]], labels)

    report.stages.append(StageReport(0, "input", stage_accuracy(*last)))

    def add_stage(pass_name: str, before: Graph, after: Graph, before_vals, after_vals, exact_stage: bool,
                  alignment: Alignment | None) -> None:
        stage = StageReport(len(report.stages), pass_name, stage_accuracy(after, after_vals), exact=exact_stage)
        stage.nodes = compare_graphs(before, after, feeds, alignment=alignment, _values=(before_vals, after_vals))
        report.stages.append(stage)
        problems = _check(stage, tolerance)
        stage.violations = [m for _, m, _ in problems]
        first = next((p for p in problems if p[2] or strict), None)
        if first is not None:
            raise VerificationError(pass_name, first[0], first[1])

    def verify(step: Pass, before: Graph, after: Graph) -> None:
        nonlocal last
        before_vals = last[1] if last[0] is before else run_graph(before, feeds, keep="all")
        after_vals = run_graph(after, feeds, keep="all")
        last = (after, after_vals)
        if step.float_view is not None:  # quantised-float in between: quantisation error, then integer error
            float_graph = step.float_view(after)
            float_vals = run_graph(float_graph, feeds, keep="all")
            add_stage(f"{step.name} (float view)", before, float_graph, before_vals, float_vals, False, None)
            before, before_vals = float_graph, float_vals
        add_stage(step.name, before, after, before_vals, after_vals, step.name in exact or step.exact,
                  step.align(before, after) if step.align else None)

    try:
        report.graph = run_pipeline(graph, steps, ctx, verify=verify, **pipeline_kw)
    except PassError as e:
        if isinstance(e.__cause__, VerificationError):
            raise e.__cause__ from None
        raise
    return report


# -- output -------------------------------------------------------------------------------------------

def to_json(report: VerifyReport) -> dict:
    """``{"samples", "calibration", "tolerance": {spike_agreement, smape}, "stages": [{"index", "pass",
    "accuracy", "exact", "violations", "nodes": [{"name", "op", "status", "reference", "kind", "scale", "note",
    "cumulative", "isolated"}]}]}``; ``cumulative``/``isolated`` hold :class:`Comparison`'s fields
    (``bit_identical``, ``elements``, ``differing``, ``max_abs_error``, ``agreement``, ``smape``,
    ``saturation``, ``membrane_max_abs_error``, ``membrane_smape``) or null."""
    return {"samples": report.samples, "calibration": report.calibration, "tolerance": asdict(report.tolerance),
            "stages": [{"index": s.index, "pass": s.pass_name, "accuracy": s.accuracy, "exact": s.exact,
                        "violations": list(s.violations), "nodes": [asdict(n) for n in s.nodes]}
                       for s in report.stages]}


def _brief(c: Comparison) -> str:
    """A comparison in a few words: identical, the spike agreement, or the SMAPE (and saturation) of values."""
    if c.bit_identical:
        return "identical"
    if c.agreement is not None:
        return f"{c.agreement:.6f} ({c.differing} spikes)"
    return f"smape {c.smape:.3g}" + (f", sat {100 * c.saturation:.2f}%" if c.saturation else "")


def _fmt(c: Comparison | None) -> str:
    """:func:`_brief`, then on lines of their own the largest error of values and of a neuron's membrane."""
    if c is None:
        return "-"
    lines = [_brief(c)]
    if not c.bit_identical and c.agreement is None:
        lines.append(f"max {c.max_abs_error:.3g}")
    if c.membrane_max_abs_error:
        lines.append(f"membrane max {c.membrane_max_abs_error:.3g}")
    return "\n".join(lines)


WORST_SHOWN = 3  # nodes per stage in the summary: the ones furthest from their reference


def _worst(nodes: list[NodeReport]) -> list[NodeReport]:
    """The :data:`WORST_SHOWN` nodes of a stage furthest from their reference, cumulatively: the neuron layers
    of lowest spike agreement, or where every spike agrees, the values of highest SMAPE."""
    differing = [n for n in nodes if n.status == "matched" and n.cumulative is not None
                 and not n.cumulative.bit_identical]
    spikes = sorted((n for n in differing if n.cumulative.agreement is not None and n.cumulative.differing),
                    key=lambda n: n.cumulative.agreement)
    values = sorted((n for n in differing if n.cumulative.smape is not None), key=lambda n: -n.cumulative.smape)
    return (spikes or values)[:WORST_SHOWN]


def render(report: VerifyReport, details: bool = False) -> list:
    """Rich tables for an 80-column terminal: a summary of the stages, then each stage's worst nodes
    (:func:`_worst`); with ``details`` every node of every stage instead (all of them are in :func:`to_json`
    too). A node name is wrapped where it must be, never cut."""
    from rich import box
    from rich.table import Column, Table
    from rich.text import Text

    def table(title: str, *columns: str) -> Table:
        return Table(*(Column(Text(name), overflow="fold") for name in columns), title=Text(title),
                     title_justify="left", box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False,
                     collapse_padding=True, min_width=min(len(title), 80))  # a title as wide as the table

    summary = table(f"verify: {report.samples} samples", "stage", "pass", "accuracy", "exact", "identical\nnodes",
                    "min spike\nagreement", "violations")
    tables, worst = [summary], []
    for s in report.stages:
        matched = [n for n in s.nodes if n.status == "matched" and n.cumulative is not None]
        agreements = [n.cumulative.agreement for n in matched if n.cumulative.agreement is not None]
        summary.add_row(str(s.index), Text(s.pass_name), "-" if s.accuracy is None else f"{s.accuracy:.4f}",
                        "yes" if s.exact else "no",
                        "-" if s.index == 0 else f"{sum(n.cumulative.bit_identical for n in matched)}/{len(matched)}",
                        f"{min(agreements):.6f}" if agreements else "-", str(len(s.violations)))
        shown = _worst(s.nodes)
        if shown:
            worst.append(table(f"stage {s.index}, {s.pass_name}: the {len(shown)} nodes furthest from the stage "
                               f"before", "node", "cumulative", "isolated"))
        for n in shown:
            worst[-1].add_row(Text(n.name), _brief(n.cumulative), _brief(n.isolated))
        if s.index == 0 or not details:
            continue
        t = table(f"stage {s.index}: {s.pass_name}", "node\n(op, reference it stands for)", "cumulative",
                  "isolated")
        for n in s.nodes:
            stands_for = f", for {n.reference}" if n.reference not in (None, n.name) else ""
            node = Text(f"{n.name}{' (ref)' if n.status == 'only_reference' else ''}\n{n.op}{stands_for}")
            if n.status == "matched" and n.cumulative is not None:
                t.add_row(node, _fmt(n.cumulative), _fmt(n.isolated))
            else:
                t.add_row(node, n.status, Text(n.note))
        tables.append(t)
    if not details and worst:
        summary.caption, summary.caption_justify = Text("every node of every stage: --details"), "left"
    return tables if details else tables + worst


__all__ = ["Comparison", "NodeReport", "StageReport", "Tolerance", "VerificationError", "VerifyReport",
           "accuracy", "compare_graphs", "default_match", "render", "to_json", "verify_pipeline"]
