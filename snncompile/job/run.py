"""The main job on a trained model (:func:`run_job`, behind ``snncompile run``): the steps of
:mod:`~snncompile.job.steps` in order, one compiled artifact and one JSON report (``SCHEMA``) with its page.

Evaluate the float model on the test split; export and lower it (calibrated on the first training samples);
place it on the target, check the design rules and bound the cores any placement needs; evaluate the integer
graph on the whole test split with the reference simulator; run the first ``lava_samples`` test samples on the Lava backend and check that every
output equals the reference simulator's; on the first ``samples`` test samples compare the float and the
integer graph's spike trains per neuron layer, count the integer graph's activity per node and per core,
estimate latency and price it for the target, the 45 nm convention and the ANN equivalent. Writes the
compiled model (``save_compiled``: what ``snncompile run m.snnir`` reads), the JSON report and its HTML page.

Schema history: ``/1`` had no ``checkpoint``, ``latency``, ``placement.per_core``, ``energy[...].per_node_pj`` or
``energy["ann"]``; docs/report_schema.md describes every field.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from ..backends.placement import PlacementError
from ..config import CALIBRATION_SAMPLES
from ..backends.protocol import get_backend
from ..targets import load_target
from ..zoo.checkpoint import LoadedCheckpoint
from .artifact import Compiled, CompileRecord, ModelSource, save_compiled
from .graph_model import GraphModel
from .steps import (Clock, JobReport, check_on_lava, check_rules, compare_spikes, compile_graph, count, export,
                    first_samples, lava_fidelity, lower_bound, price, report, simulate)


def run_job(loaded: LoadedCheckpoint | GraphModel, train_set, test_set, *, target: str = "loihi2", samples: int = 64,
            lava_samples: int = 8, calibration: int = CALIBRATION_SAMPLES, calibration_source: str | None = None,
            out_dir: Path = Path("runs"),
            lava_granularity: str = "fused", lava_timeout: float = 600.0, compiled: Compiled | None = None,
            source: ModelSource | None = None, progress: bool = False,
            step: Callable[[str], None] = lambda message: None) -> JobReport:
    """Run the whole job (see the module docstring) and write ``<out_dir>/<name>.loihi.snnir`` with its
    placement and compile record, ``<name>.report.json`` and ``<name>.report.html``. Data sets are any
    indexable ``(x, y)`` sequence (a ``torch.utils.data.Subset`` evaluates part of one); the first
    ``calibration`` items of ``train_set`` calibrate the lowering and ``calibration_source`` says what they are
    for the record and the report (default ``training set (N samples)``; a ``CalibrationSet``'s ``source``).
    ``lava_granularity``
    and ``lava_timeout`` (seconds per Lava session) set up the Lava backend. ``compiled``: a compiled model
    for ``target`` (``load_compiled``) to use instead of lowering and placing the model afresh; ``source``:
    how the model and its data load again, for the compile record (default: the checkpoint file and the
    data set it names). ``step(message)`` is told what runs next; ``progress`` shows a bar (on stderr) while
    the test set is evaluated. ``loaded`` may be a float graph from a graph file (:class:`GraphModel`) with
    data sets in its input's layout (``GraphInputs``)."""
    name = loaded.name or Path(str(loaded.path)).stem
    chip = load_target(target)
    lava = get_backend("lava", granularity=lava_granularity, timeout=lava_timeout)
    clock = Clock(step)
    graph = clock("export", lambda: export(loaded))
    float_eval = clock("float evaluation", lambda: simulate(graph, test_set, progress=progress,
                                                            description="float model"))
    if compiled is None:
        used = min(calibration, len(train_set))
        record = CompileRecord(source or ModelSource.of(loaded), target, used,
                               calibration_source=calibration_source or f"training set ({used} samples)")
        compiled = compile_graph(graph, train_set, record, clock=clock)
    elif compiled.placement.target != target:
        raise PlacementError(f"the compiled graph was placed for {compiled.placement.target!r}, not {target!r}")
    violations = check_rules(compiled, chip)
    bound = clock("lower bound", lambda: lower_bound(compiled, chip))
    int_eval = clock("integer simulation", lambda: simulate(compiled.graph, test_set, progress=progress,
                                                            description="integer graph"))
    checked = clock("Lava check", lambda: check_on_lava(compiled.graph, test_set, samples=lava_samples,
                                                        backend=lava))
    x = first_samples(test_set, samples)
    layers = clock("spike agreement", lambda: compare_spikes(graph, compiled.graph, x))
    counts = clock("activity counts", lambda: count(compiled, chip, x))
    checked.update(clock("Lava stock share", lambda: lava_fidelity(compiled.graph, counts)))
    estimate = clock("latency estimate", lambda: price(counts, chip))
    artifact = save_compiled(compiled, out_dir / f"{name}.loihi.snnir")
    return report(name, loaded, chip, float_eval=float_eval, int_eval=int_eval, lava=checked, compiled=compiled,
                  bound=bound, violations=violations, layers=layers, counts=counts, estimate=estimate,
                  artifact=artifact, out_dir=out_dir, seconds=clock.seconds)


__all__ = ["run_job"]
