"""The ``snncompile`` command line. Each command is a thin wrapper over one library function."""
from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Optional

import torch
import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Column, Table

from .backends.design_rules import DesignRuleError
from .backends.placement import PlacementError, core_lower_bound
from .backends.nir_export import NIRExportError, expressible_nodes, nir_problems, write_nir
from .backends.onnx import OnnxExportError, to_onnx
from .backends.protocol import BackendError, get_backend
from .data import DataError, load_dataset
from .data.calibration import calibration_samples
from .frontend import ExportError, export
from .frontend.nir_import import NIRImportError, from_nir
from .ir import GraphError
from .ir import io as ir_io
from .job import (SCHEMA, ArtifactError, Compiled, CompileRecord, ModelSource, load_compiled, record_path, run_job,
                  save_compiled, steps)
from .passes import PIPELINES, PassContext, PassError, verify_pipeline
from .passes.verify import render, to_json as verify_json
from .report.document import ReportError, load_report, reprice
from .report.render import render_html, render_terminal
from .sim.dataset import graph_feeds
from .sim.distributed import launched
from .train.trainer import evaluate, train
from .zoo.checkpoint import CheckpointError, LoadedCheckpoint, load_checkpoint
from .config import ATTENTION_MODES, DATASETS, ConfigError, DataConfig, ZooEntry
from .targets import load_target
from .zoo.registry import DEFAULT_MODEL, find_entry, list_entries

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Compile trained PyTorch spiking transformers for a bit-accurate Loihi-style target.")
console = Console()

USER_ERRORS = (ConfigError, CheckpointError, DataError, ExportError, GraphError, ir_io.IRFileError,
               NIRExportError, NIRImportError, OnnxExportError, PassError, DesignRuleError, PlacementError,
               FileNotFoundError, ReportError, BackendError, ArtifactError)
EXIT_USER_ERROR = 2

ModelArg = typer.Argument(DEFAULT_MODEL, help="zoo model name (see `snncompile models`) or checkpoint file")
AttentionOpt = typer.Option(None, "--attention", help=f"override the attention mode: {', '.join(ATTENTION_MODES)}")
DataRootOpt = typer.Option(None, "--data-root", help="local folder of user-supplied data (CIFAR-10, CIFAR10-DVS...)")
DatasetOpt = typer.Option(None, "--dataset", help=f"evaluation data set: {', '.join(DATASETS)} "
                                                  "(default: the one the model was trained on)")


def _checkpoint(model: str, attention: Optional[str]) -> tuple[LoadedCheckpoint, Optional[ZooEntry]]:
    """A zoo name resolves to its shipped checkpoint; anything else is a checkpoint path."""
    path = Path(model)
    if path.is_file() and path.suffix not in (".yaml", ".yml"):
        loaded = load_checkpoint(path, attention=attention)
        return loaded, _entry_named(loaded.name)
    entry = find_entry(model)
    if entry.checkpoint is None:
        raise ConfigError(f"zoo model {entry.name!r} ships no trained weights; pass an upstream "
                          f"checkpoint file, or train one with `snncompile train {entry.name}`")
    return load_checkpoint(entry.checkpoint, attention=attention), entry


def _load(model: str, attention: Optional[str], dataset: Optional[str],
          data_root: Optional[Path]) -> tuple[LoadedCheckpoint, DataConfig]:
    """The checkpoint and the data set to evaluate it on (its own, unless overridden)."""
    loaded, entry = _checkpoint(model, attention)
    data = entry.data if entry else DataConfig(dataset=loaded.dataset or "")
    data = dataclasses.replace(data, **{k: v for k, v in (("dataset", dataset), ("root", data_root and str(data_root)))
                                        if v is not None})
    if data.problems():
        raise ConfigError(f"{model}: cannot tell which data set to evaluate on ({'; '.join(data.problems())}); "
                          f"pass --dataset")
    return loaded, data


def _entry_named(name: Optional[str]) -> Optional[ZooEntry]:
    return next((e for e in list_entries() if e.name == name), None) if name else None


@app.command("models")
def models_cmd() -> None:
    """List the model zoo: configs, and the test accuracy of those with shipped weights."""
    table = Table(Column("name", no_wrap=True), "attention", "T", "D x L", "data", "shipped acc.")
    for e in list_entries():
        acc = "-"
        if e.checkpoint is not None:
            acc = f"{load_checkpoint(e.checkpoint).metrics.get('test_accuracy', float('nan')):.2%}"
        table.add_row(e.name, e.model.attention, str(e.model.time_steps), f"{e.model.dim}x{e.model.layers}",
                      e.data.dataset, acc)
    console.print(table)


@app.command("train")
def train_cmd(model: str = typer.Argument(..., help="zoo model name or YAML file"),
              out: Path = typer.Option(None, "-o", "--out", help="checkpoint to write (default runs/<name>.pt)"),
              epochs: Optional[int] = typer.Option(None, help="override the config's epoch count")) -> None:
    """Train a zoo model on its dataset (with progress) and save the checkpoint and its metrics."""
    entry = find_entry(model)
    out = out or Path("runs") / f"{entry.name}.pt"
    out.parent.mkdir(parents=True, exist_ok=True)
    result = train(entry, out, epochs=epochs)
    console.print(f"test accuracy {result.metrics['test_accuracy']:.2%} -> {result.checkpoint} "
                  f"(metrics in {result.checkpoint.with_suffix('.json')})")


@app.command("evaluate")
def evaluate_cmd(model: str = ModelArg, attention: Optional[str] = AttentionOpt,
                 dataset: Optional[str] = DatasetOpt, data_root: Optional[Path] = DataRootOpt) -> None:
    """Float accuracy of a checkpoint (ours or upstream) on its dataset's test split."""
    loaded, data = _load(model, attention, dataset, data_root)
    acc = evaluate(loaded.model, load_dataset(data, loaded.config, "test", loaded.transform))
    console.print(f"{loaded.name or loaded.path}: float test accuracy {acc:.2%} on {data.dataset}")


@app.command("run")
def run_cmd(model: str = ModelArg, attention: Optional[str] = AttentionOpt,
            dataset: Optional[str] = DatasetOpt, data_root: Optional[Path] = DataRootOpt,
            target: Optional[str] = typer.Option(None, help="hardware target (`targets/`; default loihi2, or the "
                                                 "one a compiled MODEL was placed for)"),
            samples: int = typer.Option(64, help="test samples for the per-layer spike table and activity counts"),
            lava_samples: int = typer.Option(8, help="test samples run on Lava and checked against the reference"),
            lava_granularity: str = typer.Option("fused", help="Lava processes: per_op, fused (per block) or "
                                                  "fused_model"),
            lava_timeout: float = typer.Option(600.0, help="seconds one Lava session may take"),
            out_dir: Path = typer.Option(Path("runs"), "--out-dir", help="where the graph and report go")) -> None:
    """The main job on a model: evaluate it in float, lower it to integers, place it on the target, simulate
    the test set, check a few samples on Lava, count activity, estimate energy and latency, and report it
    (terminal tables, JSON, an HTML page with plots). MODEL may be a compiled `.snnir` from `snncompile
    compile`: its graph and placement are used as they are, its model and data read from the file beside it."""
    try:  # the job's Lava backend, made now to refuse a bad setting before the job, not after minutes of it
        get_backend("lava", granularity=lava_granularity, timeout=lava_timeout)
    except BackendError as e:
        raise typer.BadParameter(str(e), param_hint="--lava-granularity") from None
    compiled = None
    if model.endswith(ir_io.SUFFIX):
        artifact = Path(model)
        compiled, (model, attention, dataset, data_root) = _compiled(artifact, attention, dataset, data_root)
        if target not in (None, compiled.record.target):
            raise ConfigError(f"{artifact} was placed for {compiled.record.target!r}, not {target!r}: compile it for "
                              f"{target!r} (snncompile compile ... --target {target})")
        target = compiled.record.target
    loaded, data = _load(model, attention, dataset, data_root)
    for note in loaded.notes:
        console.print(f"[yellow]note:[/] {note}")
    train_set, test_set = (load_dataset(data, loaded.config, split, loaded.transform) for split in ("train", "test"))
    announce = Console(stderr=True)
    report = run_job(loaded, train_set, test_set, target=target or "loihi2", samples=samples,
                     lava_samples=lava_samples, lava_granularity=lava_granularity, lava_timeout=lava_timeout,
                     out_dir=out_dir, compiled=compiled, source=ModelSource(model, attention, data.dataset, data.root),
                     progress=True, step=lambda message: announce.print(f"[dim]{message}...[/]"))
    for table in render_terminal(report.to_dict()):
        console.print(table)
    console.print(f"report: {report.files['report']} (JSON, schema {SCHEMA}); HTML page with plots: "
                  f"{report.files['html']}")
    console.print(f"compiled graph: {report.files['graph']} (placement {report.files['placement']}, compile record "
                  f"{record_path(report.files['graph'])}; `snncompile run {report.files['graph']}` runs it again)")


FORMATS = {".snnir": "snnir", ".nir": "nir", ".onnx": "onnx"}


@app.command("export")
def export_cmd(model: str = typer.Argument(..., help="checkpoint file (ours or upstream) or zoo model name"),
               out: Path = typer.Option(..., "-o", "--out", help="file to write"),
               fmt: Optional[str] = typer.Option(None, "--format", help="snnir, nir or onnx (default: from the suffix)"),
               attention: Optional[str] = AttentionOpt,
               events: Optional[bool] = typer.Option(None, "--events/--static",
                                                     help="input as an event stream or a static image "
                                                          "(default: events iff the model is in DVS mode)"),
               nir_part: bool = typer.Option(False, "--nir-part", help="NIR only: export the largest part NIR can "
                                                                        "express (the stem) instead of refusing")) -> None:
    """Export a model to the IR file format (.snnir), to NIR (its expressible part) or to ONNX (whole graph)."""
    fmt = fmt or FORMATS.get(out.suffix)
    if fmt not in FORMATS.values():
        raise ConfigError(f"cannot tell the format of {out}: pass --format snnir|nir|onnx")
    loaded, _ = _checkpoint(model, attention)
    graph = export(loaded.model, events=events)
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
def inspect_cmd(file: Path = typer.Argument(..., help=".snnir graph, checkpoint, or .nir file"),
                time_steps: int = typer.Option(4, help="timesteps to assume for a .nir file")) -> None:
    """Show a graph as a table of nodes: type, inputs, output type, parameters and semantics."""
    if file.suffix == ".snnir":
        graph = ir_io.load(file)
    elif file.suffix == ".nir":
        graph = from_nir(file, time_steps=time_steps)
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
                 dataset: Optional[str] = DatasetOpt, data_root: Optional[Path] = DataRootOpt,
                 graph_file: Optional[Path] = typer.Option(None, "--graph", help=".snnir graph to simulate "
                                                           "(default: the model exported to the IR)"),
                 split: str = typer.Option("test", help="train or test"),
                 limit: Optional[int] = typer.Option(None, help="simulate only the first N samples"),
                 batch_size: int = typer.Option(64, help="samples per batch (Lava: per Lava session)"),
                 backend: str = typer.Option("ref", help="ref: the reference simulator; lava: Lava's bit-accurate "
                                             "fixed_pt simulator (a compiled graph; checked against ref)"),
                 granularity: str = typer.Option("fused", help="Lava only: per_op, fused or fused_model"),
                 json_out: Optional[Path] = typer.Option(None, "--json", help="write the result as JSON")) -> None:
    """Simulate an IR graph on a data set: accuracy, predictions and per-node spike counts. MODEL may be a
    compiled `.snnir` from `snncompile compile` (its model and data set are read from the file beside it).

    Shards across processes when launched by torchrun (gloo):
    `torchrun --nproc_per_node=2 -m snncompile simulate MODEL`.
    """
    start = time.perf_counter()
    chosen = get_backend(backend, granularity=granularity)
    graph = ir_io.load(graph_file) if graph_file else None
    if model.endswith(ir_io.SUFFIX):  # a compiled artifact: the model and data it was compiled from
        graph_file = Path(model)
        compiled, (model, attention, dataset, data_root) = _compiled(graph_file, attention, dataset, data_root)
        graph = compiled.graph
    loaded, data = _load(model, attention, dataset, data_root)
    graph = steps.export(loaded) if graph is None else graph
    test_set = load_dataset(data, loaded.config, split, loaded.transform)
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


def _compiled(artifact: Path, attention: Optional[str], dataset: Optional[str],
              data_root: Optional[Path]) -> tuple[Compiled, tuple]:
    """A compiled model, and the model, attention, dataset and data root to load beside it: its record's, where
    the command line does not override them."""
    compiled = load_compiled(artifact)
    recorded = compiled.record.source
    return compiled, (recorded.model, attention or recorded.attention, dataset or recorded.dataset,
                      data_root or recorded.data_root)


def _samples(data_set, count: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``count`` items of a data set, stacked: inputs and labels."""
    n = min(count, len(data_set))
    return (torch.stack([data_set[i][0] for i in range(n)]),
            torch.tensor([int(data_set[i][1]) for i in range(n)]))


def _pipeline(name: str):
    if name not in PIPELINES:
        raise ConfigError(f"unknown pipeline {name!r}; known: {', '.join(PIPELINES)}")
    return PIPELINES[name]


CalibrationOpt = typer.Option(64, help="samples that calibrate the scales chosen from data")
CalibrateFromOpt = typer.Option("auto", "--calibrate-from", help="calibration samples: train (the training set), "
                                "synthetic (inputs drawn with the data set's normalisation statistics: no data "
                                "needed), a .npy/.pt tensor file, or auto (train when the data set is at hand, "
                                "else synthetic)")
TargetOpt = typer.Option(None, help="hardware target whose widths the range proof checks (`targets/`: "
                                    "loihi1, loihi2, ...; default: the Loihi node types' own limits)")


@app.command("compile")
def compile_cmd(model: str = ModelArg, attention: Optional[str] = AttentionOpt,
                dataset: Optional[str] = DatasetOpt, data_root: Optional[Path] = DataRootOpt,
                out: Optional[Path] = typer.Option(None, "-o", "--out", help="integer graph to write "
                                                   "(default runs/<name>.loihi.snnir)"),
                target: str = typer.Option("loihi2", help="hardware target (`targets/`: loihi1, loihi2): its widths "
                                           "bound the range proof, its cores the placement and design rules"),
                max_chips: Optional[int] = typer.Option(None, help="chips the placement may use (default: as many "
                                                        "as it needs)"),
                calibration: int = CalibrationOpt, calibrate_from: str = CalibrateFromOpt,
                dump_dir: Optional[Path] = typer.Option(None, "--dump-dir", help="also write the graph after "
                                                        "every pass, and the time per pass")) -> None:
    """Lower a model to the integer graph a Loihi-style target runs (the `loihi` pipeline), place it on the
    target's cores, check the design rules (every violation is listed, and nothing is written), and save the
    compiled model: graph, placement and compile record (`snncompile run` and `simulate` take the graph)."""
    loaded, data = _load(model, attention, dataset, data_root)
    samples = calibration_samples(calibrate_from, data, loaded.config, calibration, loaded.transform)
    console.print(f"calibration: {escape(samples.source)}")
    record = CompileRecord(ModelSource(model, attention, data.dataset, data.root), target, len(samples),
                           1 if max_chips is None else max_chips, samples.source)
    graph = steps.export(loaded)
    compiled = steps.compile_graph(graph, samples, record, dump_dir=dump_dir)
    if max_chips is None:  # the chips it needs are allowed
        compiled = dataclasses.replace(compiled, record=dataclasses.replace(
            record, max_chips=compiled.placement.chips_used))
    lowered, placement = compiled.graph, compiled.placement
    table = Table("pass", "what it did", title=f"{loaded.name or model}: {len(graph.nodes)} -> "
                                               f"{len(lowered.nodes)} nodes")
    for entry in lowered.history:
        table.add_row(entry.name, _summary(entry.options))
    console.print(table)
    violations = steps.check_rules(compiled, load_target(target))
    if violations:  # nothing written: no file may look like a compiled model that fits
        raise DesignRuleError(violations, target)
    console.print("design rules: no violation")
    files = save_compiled(compiled, out or Path("runs") / f"{loaded.name or Path(model).stem}.loihi.snnir")
    console.print(f"wrote {files['graph']}: {lowered.time_steps} steps per sample ({graph.time_steps} data steps + "
                  f"latency)")
    console.print(f"wrote {files['placement']}: {placement.cores_used} cores on {placement.chips_used} chip(s) of "
                  f"{target} (lower bound from the graph: {core_lower_bound(lowered, target).cores} cores)")
    console.print(f"wrote {files['record']}: the model, data and target it was compiled from and for")


def _summary(report: dict) -> str:
    """One line per pass report: the counts a reader looks for first."""
    parts = []
    for key, value in report.items():
        if isinstance(value, dict):
            parts.append(f"{key}: {len(value)}")
        elif isinstance(value, (int, float, str)) and not isinstance(value, bool):
            parts.append(f"{key}: {value}")
    return ", ".join(parts)


@app.command("verify")
def verify_cmd(model: str = ModelArg, attention: Optional[str] = AttentionOpt,
               dataset: Optional[str] = DatasetOpt, data_root: Optional[Path] = DataRootOpt,
               pipeline: str = typer.Option("loihi", help=f"pass pipeline: {', '.join(PIPELINES)}"),
               samples: int = typer.Option(64, help="test samples run through every stage"),
               calibration: int = CalibrationOpt, calibrate_from: str = CalibrateFromOpt,
               target: Optional[str] = TargetOpt,
               json_out: Optional[Path] = typer.Option(None, "--json", help="also write the report as JSON")) -> None:
    """Run a model through a pass pipeline and compare every stage with the previous one, node by node
    (spike agreement, membrane error, isolated and cumulative) and by accuracy."""
    passes = _pipeline(pipeline)
    loaded, data = _load(model, attention, dataset, data_root)
    x, labels = _samples(load_dataset(data, loaded.config, "test", loaded.transform), samples)
    graph = export(loaded.model)
    samples = calibration_samples(calibrate_from, data, loaded.config, calibration, loaded.transform)
    console.print(f"calibration: {escape(samples.source)}")
    ctx = PassContext(calibration=steps.calibration_feeds(graph, samples, calibration), target=target)
    report = verify_pipeline(graph, passes, ctx, graph_feeds(graph, x), labels)
    for table in render(report):
        console.print(table)
    if json_out:
        json_out.write_text(json.dumps(verify_json(report), indent=2) + "\n")
        console.print(f"report written to {json_out}")


@app.command("report")
def report_cmd(artifact: Path = typer.Argument(..., help="run report JSON (`snncompile run` writes "
                                                         "runs/<model>.report.json)"),
               html: Optional[Path] = typer.Option(None, "--html", help="HTML page to write (default: beside the "
                                                   "report, <name>.html)"),
               json_out: Optional[Path] = typer.Option(None, "--json", help="write the checked (and re-priced) "
                                                       "report as JSON"),
               target: Optional[str] = typer.Option(None, "--target", help="re-price the energy for this target "
                                                    "from the stored counts (no re-simulation)")) -> None:
    """Show a run report as tables and write it as one self-contained HTML page with plots (firing rates,
    operations, energy by operation and by node, core utilisation, float-vs-integer agreement).
    Fields and schema versions: docs/report_schema.md."""
    report = load_report(artifact)
    if target:
        report = reprice(report, target)
    for table in render_terminal(report):
        console.print(table)
    html = html or artifact.with_suffix(".html")
    html.write_text(render_html(report), encoding="utf-8")
    console.print(f"HTML page with plots: {html}")
    if json_out:
        json_out.write_text(json.dumps(report, indent=1) + "\n")
        console.print(f"report written to {json_out}")


def main() -> None:
    """Console entry point: user errors (bad file, config, data) print one message and exit 2."""
    try:
        app()
    except USER_ERRORS as e:
        console.print(f"[red]error:[/] {escape(str(e))}")  # a message's [brackets] are text, not markup
        raise SystemExit(EXIT_USER_ERROR) from None
