"""The ``snncompile`` commands, each a thin wrapper over one library function. A command imports the stages it
uses when it runs: ``snncompile --help`` and ``--version`` load no torch. Its options are checked while the
command line is parsed (:mod:`.options`); every user error is reported one way (:mod:`.errors`)."""
from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Column, Table

from .. import __version__
from ..config import CALIBRATION_SAMPLES, ConfigError
from ..zoo.registry import find_entry, list_entries
from .errors import Commands
from .models import (AttentionOpt, ConventionOpt, DataRootOpt, DatasetOpt, DtOpt, GraphOptions, ModelArg, SetOpt,
                     TimeStepsOpt,
                     checkpoint_of, data_config, data_set, fitted, is_graph_file, load_graph, load_model, load_source)
from .options import any_target, chip_count, chip_target, one_of, output_dir, output_file, positive, unwritable

if TYPE_CHECKING:
    import torch

    from ..job import Compiled

app = typer.Typer(cls=Commands, add_completion=False, no_args_is_help=True,
                  help="Compile trained PyTorch spiking transformers for a bit-accurate Loihi-style target.")
console = Console()


def _granularities():
    from ..backends.lava.mapping import GRANULARITIES  # imports Lava
    return GRANULARITIES


def _backends():
    from ..backends.protocol import BACKENDS_BY_NAME
    return BACKENDS_BY_NAME


def _pipelines():
    from ..passes import PIPELINES
    return PIPELINES


def _splits():
    from ..data import SPLITS
    return SPLITS


DetailsOpt = typer.Option(False, "--details", help="also the tables per layer, node and energy term (every table "
                                                   "and plot: the HTML page)")



CalibrationOpt = typer.Option(CALIBRATION_SAMPLES, min=1,
                              help="samples that calibrate the scales chosen from data")
CalibrateFromOpt = typer.Option("auto", "--calibrate-from", help="calibration samples: train (the training set), "
                                "synthetic (inputs drawn with the data set's normalisation statistics: no data "
                                "needed), a .npy/.pt tensor file, or auto (train when the data set is at hand, "
                                "else synthetic)")


def _default_output(path: Path, option: str) -> Path:
    """An output file a command chose itself, checked as an option's value is (before any work)."""
    if reason := unwritable(path, directory=False):
        raise typer.BadParameter(reason, param_hint=option)
    return path


def _version(show: bool) -> None:
    if show:
        console.print(f"snncompile {__version__}")
        raise typer.Exit()


@app.callback()
def _common(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                         help="print the version and exit")) -> None:
    pass


@app.command("models")
def models_cmd() -> None:
    """List the model zoo: configs, and the test accuracy of those with shipped weights."""
    from ..zoo.checkpoint import load_checkpoint
    table = Table(Column("name", no_wrap=True), "backbone", "attention", "T", "width x blocks", "data",
                  "shipped acc.")
    for e in list_entries():
        acc = "-"
        if e.checkpoint is not None:
            acc = f"{load_checkpoint(e.checkpoint).metrics.get('test_accuracy', float('nan')):.2%}"
        table.add_row(e.name, e.model.backbone, e.model.attention_core, str(e.model.time_steps),
                      e.model.size_summary, e.data.dataset, acc)
    console.print(table)


@app.command("train")
def train_cmd(model: str = typer.Argument(..., help="zoo model name or YAML file"),
              out: Optional[Path] = typer.Option(None, "-o", "--out", callback=output_file,
                                                 help="checkpoint to write (default runs/<name>.pt)"),
              epochs: Optional[int] = typer.Option(None, min=1, help="override the config's epoch count")) -> None:
    """Train a zoo model on its dataset (with progress) and save the checkpoint and its metrics."""
    from ..train.trainer import train
    entry = find_entry(model)
    out = out or _default_output(Path("runs") / f"{entry.name}.pt", "--out")
    out.parent.mkdir(parents=True, exist_ok=True)
    result = train(entry, out, epochs=epochs)
    console.print(f"test accuracy {result.metrics['test_accuracy']:.2%} -> {result.checkpoint} "
                  f"(metrics in {result.checkpoint.with_suffix('.json')})")


@app.command("evaluate")
def evaluate_cmd(model: str = ModelArg, attention: Optional[str] = AttentionOpt,
                 sets: Optional[list[str]] = SetOpt,
                 dataset: Optional[str] = DatasetOpt, data_root: Optional[Path] = DataRootOpt) -> None:
    """Float accuracy of a checkpoint (ours or upstream) on its dataset's test split."""
    from ..data import load_dataset
    from ..train.trainer import evaluate
    loaded, data = load_model(model, attention, dataset, data_root, sets)
    acc = evaluate(loaded.model, load_dataset(data, loaded.config, "test", loaded.transform))
    console.print(f"{loaded.name or loaded.path}: float test accuracy {acc:.2%} on {data.dataset}")


@app.command("run")
def run_cmd(model: str = ModelArg, attention: Optional[str] = AttentionOpt,
            sets: Optional[list[str]] = SetOpt,
            dataset: Optional[str] = DatasetOpt, data_root: Optional[Path] = DataRootOpt,
            target: Optional[str] = typer.Option(None, callback=chip_target, help="hardware target (`targets/`; "
                                                 "default loihi2, or the one a compiled MODEL was placed for)"),
            samples: int = typer.Option(64, min=1, help="test samples for the per-layer spike table and activity "
                                        "counts"),
            lava_samples: int = typer.Option(8, min=1, help="test samples run on Lava and checked against the "
                                             "reference"),
            lava_granularity: str = typer.Option("fused", callback=one_of(_granularities),
                                                 help="Lava processes: per_op, fused (per block) or fused_model"),
            lava_timeout: float = typer.Option(600.0, callback=positive, help="seconds one Lava session may take"),
            calibration: int = CalibrationOpt, calibrate_from: str = CalibrateFromOpt,
            out_dir: Path = typer.Option(Path("runs"), "--out-dir", callback=output_dir,
                                         help="where the graph and report go"),
            details: bool = DetailsOpt, time_steps: int = TimeStepsOpt, dt: Optional[float] = DtOpt,
            nir_convention: str = ConventionOpt) -> None:
    """The main job on a model: evaluate it in float, lower it to integers, place it on the target, simulate
    the test set, check a few samples on Lava, count activity, estimate energy and latency, and report it
    (terminal tables, JSON, an HTML page with plots). MODEL may be a compiled `.snnir` from `snncompile
    compile`: its graph and placement are used as they are, its model and data read from the file beside it.
    MODEL may be a graph file (.nir, .net) with a --dataset whose samples fit its input."""
    from ..data.calibration import calibration_samples
    from ..ir import io as ir_io
    from ..job import record_path, run_job
    from ..report.render import render_terminal
    compiled = None
    options = GraphOptions(time_steps, dt, nir_convention)
    if model.endswith(ir_io.SUFFIX):
        artifact = Path(model)
        compiled, (model, attention, dataset, data_root, options, sets) = _compiled(
            artifact, attention, dataset, data_root, options, sets)
        if target not in (None, compiled.record.target):
            raise ConfigError(f"{artifact} was placed for {compiled.record.target!r}, not {target!r}: compile it for "
                              f"{target!r} (snncompile compile ... --target {target})")
        target = compiled.record.target
    loaded, data = load_source(model, attention, dataset, data_root, options, sets)
    for note in loaded.notes:
        console.print(f"[yellow]note:[/] {note}")
    test_set = data_set(loaded, data, "test")
    calibrating = None if compiled else calibration_samples(calibrate_from, data, data_config(loaded, data),
                                                            calibration, loaded.transform)
    if calibrating is not None:
        console.print(f"calibration: {escape(calibrating.source)}")
    announce = Console(stderr=True)
    report = run_job(loaded, calibrating and fitted(loaded, calibrating, "calibration"), test_set,
                     target=target or "loihi2", samples=samples, lava_samples=lava_samples, calibration=calibration,
                     calibration_source=calibrating and calibrating.source,
                     lava_granularity=lava_granularity, lava_timeout=lava_timeout,
                     out_dir=out_dir, compiled=compiled, source=_source(model, attention, data, options, sets),
                     progress=True, step=lambda message: announce.print(f"[dim]{message}...[/]"))
    for table in render_terminal(report.to_dict(), details=details):  # its headline names the report and page
        console.print(table)
    console.print(f"compiled graph: {report.files['graph']} (placement {report.files['placement']}, compile record "
                  f"{record_path(report.files['graph'])}; `snncompile run {report.files['graph']}` runs it again)")


FORMATS = {".snnir": "snnir", ".nir": "nir", ".onnx": "onnx"}


@app.command("export")
def export_cmd(model: str = typer.Argument(..., help="checkpoint file (ours or upstream), zoo model name, or graph "
                                                   "file (.nir)"),
               out: Path = typer.Option(..., "-o", "--out", callback=output_file, help="file to write"),
               fmt: Optional[str] = typer.Option(None, "--format", callback=one_of(FORMATS.values),
                                                 help="snnir, nir or onnx (default: from the suffix)"),
               attention: Optional[str] = AttentionOpt,
               sets: Optional[list[str]] = SetOpt,
               events: Optional[bool] = typer.Option(None, "--events/--static",
                                                     help="input as an event stream or a static image "
                                                          "(default: events iff the model is in DVS mode)"),
               nir_part: bool = typer.Option(False, "--nir-part", help="NIR only: export the largest part NIR can "
                                                                        "express (the stem) instead of refusing"),
               time_steps: int = TimeStepsOpt, dt: Optional[float] = DtOpt,
               nir_convention: str = ConventionOpt) -> None:
    """Export a model to the IR file format (.snnir), to NIR (its expressible part) or to ONNX (whole graph); a
    graph file (.nir) is read into the IR first."""
    from ..backends.nir_export import expressible_nodes, nir_problems, write_nir
    from ..backends.onnx import to_onnx
    from ..frontend import export
    from ..ir import io as ir_io
    fmt = fmt or FORMATS.get(out.suffix)
    if fmt is None:
        raise ConfigError(f"cannot tell the format of {out}: pass --format snnir|nir|onnx")
    if is_graph_file(model):
        graph = load_graph(model, GraphOptions(time_steps, dt, nir_convention)).graph
    else:
        graph = export(checkpoint_of(model, attention, sets)[0].model, events=events)
    if fmt == "snnir":
        ir_io.save(graph, out)
        written = f"{len(graph.nodes)} nodes"
    elif fmt == "onnx":
        onnx_model = to_onnx(graph)
        out.write_bytes(onnx_model.SerializeToString())
        written = f"{len(onnx_model.graph.node)} ONNX nodes in domain snncompile"
    else:
        refused = nir_problems(graph, fold_batchnorm=True)
        if refused and not nir_part:
            reasons = sorted({f"{graph.op(n).type_name()}: {why}" for n, why in refused.items()})
            raise ConfigError(f"NIR cannot express {len(refused)} node(s) of this model:\n  - " + "\n  - ".join(reasons)
                              + "\npass --nir-part to export the largest part NIR can express")
        part = expressible_nodes(graph, fold_batchnorm=True)
        nir_graph = write_nir(graph, out, nodes=part if refused else None, fold_batchnorm=True)
        written = f"{len(nir_graph.nodes)} NIR nodes" + (f" (the part up to {part[-1]}: {len(part)} of "
                                                         f"{len(graph.nodes)} IR nodes)" if refused else "")
    console.print(f"wrote {out} ({fmt}): {written}")


@app.command("inspect")
def inspect_cmd(file: Path = typer.Argument(..., help=".snnir graph, checkpoint, or graph file (.nir)"),
                time_steps: int = TimeStepsOpt, dt: Optional[float] = DtOpt,
                nir_convention: str = ConventionOpt) -> None:
    """Show a graph as a table of nodes: type, inputs, output type, parameters and semantics."""
    from ..frontend import export
    from ..ir import io as ir_io
    from ..zoo.checkpoint import load_checkpoint
    if file.suffix == ".snnir":
        graph = ir_io.load(file)
    elif is_graph_file(str(file)):
        graph = load_graph(str(file), GraphOptions(time_steps, dt, nir_convention)).graph
    else:
        graph = export(load_checkpoint(file).model)
    types = graph.types()
    table = Table("node", "type", "inputs", "output", "parameters", "semantics",
                  title=f"{file.name}: {len(graph.nodes)} nodes, T={graph.time_steps}")
    for name, node in graph.nodes.items():
        op = node.op
        params = ", ".join(f"{k}{list(v.shape)}" for k, v in op.arrays().items())
        semantics = " ".join(f"{k}={v}" for k, v in op.attributes().items())
        table.add_row(name, op.type_name(), ", ".join(node.inputs), str(types[name]), params, semantics)
    console.print(table)
    for entry in graph.history:
        console.print(f"history: {entry.name} {dict(entry.options)}")


@app.command("simulate")
def simulate_cmd(model: str = ModelArg, attention: Optional[str] = AttentionOpt,
                 sets: Optional[list[str]] = SetOpt,
                 dataset: Optional[str] = DatasetOpt, data_root: Optional[Path] = DataRootOpt,
                 graph_file: Optional[Path] = typer.Option(None, "--graph", help=".snnir graph to simulate "
                                                           "(default: the model exported to the IR)"),
                 split: str = typer.Option("test", callback=one_of(_splits), help="train or test"),
                 limit: Optional[int] = typer.Option(None, min=1, help="simulate only the first N samples"),
                 batch_size: int = typer.Option(64, min=1, help="samples per batch (Lava: per Lava session)"),
                 backend: str = typer.Option("ref", callback=one_of(_backends),
                                             help="ref: the reference simulator; lava: Lava's bit-accurate "
                                             "fixed_pt simulator (a compiled graph; checked against ref)"),
                 granularity: str = typer.Option("fused", callback=one_of(_granularities),
                                                 help="Lava only: per_op, fused or fused_model"),
                 json_out: Optional[Path] = typer.Option(None, "--json", callback=output_file,
                                                         help="write the result as JSON"),
                 time_steps: int = TimeStepsOpt, dt: Optional[float] = DtOpt,
                 nir_convention: str = ConventionOpt) -> None:
    """Simulate an IR graph on a data set: accuracy, predictions and per-node spike counts. MODEL may be a
    compiled `.snnir` from `snncompile compile` (its model and data set are read from the file beside it), or a
    graph file (.nir) with a --dataset whose samples fit its input.

    Shards across processes when launched by torchrun (gloo):
    `torchrun --nproc_per_node=2 -m snncompile simulate MODEL`.
    """
    from ..backends.protocol import get_backend
    from ..ir import io as ir_io
    from ..job import steps
    from ..sim.distributed import launched
    start = time.perf_counter()
    chosen = get_backend(backend, granularity=granularity)
    graph = ir_io.load(graph_file) if graph_file else None
    options = GraphOptions(time_steps, dt, nir_convention)
    if model.endswith(ir_io.SUFFIX):  # a compiled artifact: the model and data it was compiled from
        graph_file = Path(model)
        compiled, (model, attention, dataset, data_root, options, sets) = _compiled(
            graph_file, attention, dataset, data_root, options, sets)
        graph = compiled.graph
    loaded, data = load_source(model, attention, dataset, data_root, options, sets)
    graph = steps.export(loaded) if graph is None else graph
    test_set = data_set(loaded, data, split)
    indices = range(min(limit, len(test_set))) if limit is not None else None
    result = chosen.evaluate(graph, test_set, indices=indices, batch_size=batch_size)
    rank, world = launched()
    if rank != 0:
        return
    if json_out:
        doc = {"model": model, "graph": str(graph_file) if graph_file else None, "dataset": data.dataset,
               "split": split, "backend": backend, "world_size": world,
               "seconds": round(time.perf_counter() - start, 3), **result.to_dict()}
        json_out.write_text(json.dumps(doc, indent=1) + "\n")
    console.print(f"{loaded.name or model}: simulated accuracy {result.accuracy:.2%} ({result.correct}/"
                  f"{result.total}) on {data.dataset} {split}; {result.summary}")


def _compiled(artifact: Path, attention: Optional[str], dataset: Optional[str], data_root: Optional[Path],
              options: GraphOptions, sets: Optional[list[str]]) -> tuple[Compiled, tuple]:
    """A compiled model, and the model, attention, dataset, data root, graph file options and ``--set`` fields to
    load beside it: its record's, where the command line does not override them (a graph file's options and the
    ``--set`` fields: always the record's, which made the graph)."""
    from ..job import load_compiled
    compiled = load_compiled(artifact)
    recorded = compiled.record.source
    if recorded.graph_options is not None:
        options = GraphOptions(**recorded.graph_options)
    if sets and sets != recorded.config_sets:
        raise ConfigError(f"{artifact} was compiled with --set {' '.join(recorded.config_sets or []) or '(none)'}: "
                          "its graph is that model's; compile again to change its config")
    return compiled, (recorded.model, attention or recorded.attention, dataset or recorded.dataset,
                      data_root or recorded.data_root, options, recorded.config_sets)


def _source(model: str, attention: Optional[str], data, options: GraphOptions, sets: Optional[list[str]]):
    """How the model and its data load again (the compile record): a graph file with its reader options, a
    checkpoint with its ``--set`` fields."""
    from ..job import ModelSource
    return ModelSource(model, attention, data.dataset, data.root,
                       dataclasses.asdict(options) if is_graph_file(model) else None, list(sets) if sets else None)


def _samples(data_set, count: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``count`` items of a data set, stacked: inputs and labels."""
    import torch
    n = min(count, len(data_set))
    return (torch.stack([data_set[i][0] for i in range(n)]),
            torch.tensor([int(data_set[i][1]) for i in range(n)]))


@app.command("compile")
def compile_cmd(model: str = ModelArg, attention: Optional[str] = AttentionOpt,
                sets: Optional[list[str]] = SetOpt,
                dataset: Optional[str] = DatasetOpt, data_root: Optional[Path] = DataRootOpt,
                out: Optional[Path] = typer.Option(None, "-o", "--out", callback=output_file,
                                                   help="integer graph to write (default runs/<name>.loihi.snnir)"),
                target: str = typer.Option("loihi2", callback=chip_target, help="hardware target (`targets/`: "
                                           "loihi1, loihi2): its widths bound the range proof, its cores the "
                                           "placement and design rules"),
                max_chips: Optional[str] = typer.Option(None, help="chips the placement may use: a count, or "
                                                        "a system of the target's chips (`targets/`: kapoho-point, "
                                                        "hala-point); default: as many as it needs"),
                calibration: int = CalibrationOpt, calibrate_from: str = CalibrateFromOpt,
                dump_dir: Optional[Path] = typer.Option(None, "--dump-dir", callback=output_dir,
                                                        help="also write the graph after every pass, and the time "
                                                        "per pass"),
                time_steps: int = TimeStepsOpt, dt: Optional[float] = DtOpt,
                nir_convention: str = ConventionOpt) -> None:
    """Lower a model to the integer graph a Loihi-style target runs (the `loihi` pipeline), place it on the
    target's cores, check the design rules (every violation is listed, and nothing is written), and save the
    compiled model: graph, placement and compile record (`snncompile run` and `simulate` take the graph). MODEL
    may be a graph file (.nir) with a --dataset: calibration samples come from it (or --calibrate-from)."""
    from ..backends.design_rules import DesignRuleError
    from ..backends.placement import core_lower_bound
    from ..data.calibration import calibration_samples
    from ..job import CompileRecord, save_compiled, steps
    from ..targets import load_target
    chips = None if max_chips is None else chip_count(max_chips, target)
    options = GraphOptions(time_steps, dt, nir_convention)
    loaded, data = load_source(model, attention, dataset, data_root, options, sets)
    out = out or _default_output(Path("runs") / f"{loaded.name or Path(model).stem}.loihi.snnir", "--out")
    samples = calibration_samples(calibrate_from, data, data_config(loaded, data), calibration, loaded.transform)
    console.print(f"calibration: {escape(samples.source)}")
    record = CompileRecord(_source(model, attention, data, options, sets), target, len(samples),
                           1 if chips is None else chips, samples.source)
    graph = steps.export(loaded)
    compiled = steps.compile_graph(graph, fitted(loaded, samples, "calibration"), record, dump_dir=dump_dir)
    if chips is None:  # the chips it needs are allowed
        compiled = dataclasses.replace(compiled, record=dataclasses.replace(
            record, max_chips=compiled.placement.chips_used))
    lowered, placement = compiled.graph, compiled.placement
    table = Table("pass", "what it did", title=f"{loaded.name or model}: {len(graph.nodes)} -> "
                                               f"{len(lowered.nodes)} nodes")
    for entry in lowered.history:
        table.add_row(entry.name, _summary(entry.options, set(graph.nodes) | set(lowered.nodes)))
    console.print(table)
    violations = steps.check_rules(compiled, load_target(target))
    if violations:  # nothing written: no file may look like a compiled model that fits
        raise DesignRuleError(violations, target)
    console.print("design rules: no violation")
    files = save_compiled(compiled, out)
    timing = lowered.schedule.summary() if lowered.schedule else "unscheduled: the graph's own steps"
    console.print(f"wrote {files['graph']}: {lowered.time_steps} steps per sample ({timing})")
    console.print(f"wrote {files['placement']}: {placement.cores_used} cores on {placement.chips_used} chip(s) of "
                  f"{target} (lower bound from the graph: {core_lower_bound(lowered, target).cores} cores)")
    console.print(f"wrote {files['record']}: the model, data and target it was compiled from and for")


def _summary(report: dict, nodes: set[str]) -> str:
    """One line per pass report that says what each number is: a record per node is shown as how many nodes
    it holds (``latency (69 nodes)``, not a latency of 69), a number or a text as it is (``run_steps = 19``)."""
    parts = []
    for key, value in report.items():
        if isinstance(value, (dict, list, tuple)):
            per_node = all(isinstance(k, str) and k in nodes for k in value)
            one, many = ("node", "nodes") if per_node else ("entry", "entries")
            parts.append(f"{key} ({len(value)} {one if len(value) == 1 else many})")
        elif isinstance(value, (int, float, str)) and not isinstance(value, bool):
            parts.append(f"{key} = {value}")
    return ", ".join(parts)


@app.command("verify")
def verify_cmd(model: str = ModelArg, attention: Optional[str] = AttentionOpt,
               sets: Optional[list[str]] = SetOpt,
               dataset: Optional[str] = DatasetOpt, data_root: Optional[Path] = DataRootOpt,
               pipeline: str = typer.Option("loihi", callback=one_of(_pipelines),
                                            help="pass pipeline: loihi (to integers) or float (BatchNorm folded)"),
               samples: int = typer.Option(64, min=1, help="test samples run through every stage"),
               calibration: int = CalibrationOpt, calibrate_from: str = CalibrateFromOpt,
               target: Optional[str] = typer.Option(None, callback=chip_target, help="hardware target whose widths "
                                                    "the range proof checks (`targets/`: loihi1, loihi2, ...; "
                                                    "default: the Loihi node types' own limits)"),
               json_out: Optional[Path] = typer.Option(None, "--json", callback=output_file,
                                                       help="also write the report as JSON"),
               details: bool = typer.Option(False, "--details", help="every node of every stage, not only the "
                                            "summary and each stage's worst nodes (all are in --json)"),
               time_steps: int = TimeStepsOpt, dt: Optional[float] = DtOpt,
               nir_convention: str = ConventionOpt) -> None:
    """Run a model through a pass pipeline and compare every stage with the previous one, node by node
    (spike agreement, membrane error, isolated and cumulative) and by accuracy."""
    from ..data.calibration import calibration_samples
    from ..job import steps
    from ..passes import PIPELINES, PassContext, verify_pipeline
    from ..passes.verify import render, to_json as verify_json
    from ..sim.dataset import graph_feeds
    loaded, data = load_source(model, attention, dataset, data_root, GraphOptions(time_steps, dt, nir_convention),
                                 sets)
    x, labels = _samples(data_set(loaded, data, "test"), samples)
    graph = steps.export(loaded)
    calibrating = calibration_samples(calibrate_from, data, data_config(loaded, data), calibration, loaded.transform)
    console.print(f"calibration: {escape(calibrating.source)}")
    ctx = PassContext(calibration=steps.calibration_feeds(graph, fitted(loaded, calibrating, "calibration"),
                                                          calibration), target=target)
    report = verify_pipeline(graph, PIPELINES[pipeline], ctx, graph_feeds(graph, x), labels,
                             calibration=calibrating.source)
    for table in render(report, details=details):
        console.print(table)
    if json_out:
        json_out.write_text(json.dumps(verify_json(report), indent=2) + "\n")
        console.print(f"report written to {json_out}")


@app.command("report")
def report_cmd(artifact: Path = typer.Argument(..., help="run report JSON (`snncompile run` writes "
                                                         "runs/<model>.report.json)"),
               html: Optional[Path] = typer.Option(None, "--html", callback=output_file,
                                                   help="HTML page to write (default: beside the report, "
                                                   "<name>.html)"),
               json_out: Optional[Path] = typer.Option(None, "--json", callback=output_file,
                                                       help="write the checked (and re-priced) report as JSON"),
               target: Optional[str] = typer.Option(None, "--target", callback=any_target,
                                                    help="re-price the energy for this target from the stored "
                                                    "counts (no re-simulation)"),
               details: bool = DetailsOpt) -> None:
    """Show a run report as tables and write it as one self-contained HTML page with plots (firing rates,
    operations, energy by operation and by node, core utilisation, float-vs-integer agreement).
    Fields and schema versions: docs/report_schema.md."""
    from ..report.document import load_report, reprice
    from ..report.render import render_html, render_terminal
    report = load_report(artifact)
    html = html or _default_output(artifact.with_suffix(".html"), "--html")
    if target:
        report = reprice(report, target)
    for table in render_terminal(report, details=details):
        console.print(table)
    html.write_text(render_html(report), encoding="utf-8")
    console.print(f"HTML page with plots: {html}")
    if json_out:
        json_out.write_text(json.dumps(report, indent=1) + "\n")
        console.print(f"report written to {json_out}")
