"""Hardware targets as data: ``targets/<name>.toml`` parsed once into a frozen, schema-checked ``Target``.

A target file has three top-level keys and one table per figure, grouped in sections::

    name = "loihi1"                 # must equal the file name without .toml
    kind = "chip"                   # "chip", "energy-convention" (a per-op energy convention, no cores) or
                                    # "system" (a board or machine of chips; it names them: chip_target = "loihi2")
    description = "..."

    [core.neurons_per_core]
    value = 1024
    unit = "neurons"                # must be the schema's unit for the key (no conversions)
    source = "Davies et al. 2018, IEEE Micro 38(1):82-99"
    status = "documented"           # one of STATUSES
    note = "..."                    # optional; required when status is "derived" or "proxy"

``SCHEMA`` below lists every key: its section, unit, type, range, the kinds it belongs to and whether
those kinds require it. Rules, lowering and reports read hardware numbers only from a ``Target``:
``load_target("loihi1").neurons_per_core.value``; a figure the target does not give is ``None``.
Every problem in a file (missing, unknown, mistyped, out of range, unsourced) is reported at once,
each naming the file and the key.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path

import tomli  # Python 3.10 has no tomllib

from .resources import shipped_dir

KINDS = ("chip", "energy-convention", "system")
STATUSES = {
    "documented": "stated in the cited paper, product brief or reference source code",
    "measured": "measured on silicon (cited)",
    "pre-silicon": "from pre-silicon simulation (Davies et al. 2018 Table 2)",
    "derived": "computed or inferred from documented figures; the note says how",
    "proxy": "stands in for a figure this target has not published; source and note say whence",
    "calibrated": "fitted to a cited silicon measurement with this project's own counts; the note says how",
    "unverified": "from a single secondary source; a placeholder until checked",
}
NEEDS_NOTE = ("derived", "proxy", "calibrated")
FIGURE_KEYS = ("value", "unit", "source", "status", "note")


@dataclass(frozen=True)
class Figure:
    """One number with its unit and provenance."""

    value: int | float | dict  # a table figure: {count: value}
    unit: str
    source: str
    status: str
    note: str = ""

    def record(self) -> dict:
        """What a report keeps of a figure it priced with: value, unit, status, source."""
        return {"value": self.value, "unit": self.unit, "status": self.status, "source": self.source}


@dataclass(frozen=True)
class Key:
    """Schema of one figure: where it lives, what it measures, and who must give it."""

    section: str
    unit: str
    type: type           # int, float (a TOML integer is accepted), or dict: a table {count: value}
    bounds: tuple[float | None, float | None]  # inclusive (low, high); None = unbounded
    kinds: tuple[str, ...]
    required: bool
    doc: str


CHIP = ("chip",)
CONV = ("energy-convention",)
SYSTEM = ("system",)
REQ, OPT = True, False
NONNEG, POS = (0, None), (1, None)

SCHEMA: dict[str, Key] = {k: Key(*row) for k, row in {
    # key: (section, unit, type, (low, high), kinds, required, doc)
    "chips_per_system": ("system", "chips", int, POS, SYSTEM, REQ, "chips of the system's chip target"),
    "process_node": ("chip", "nm", float, NONNEG, CHIP + CONV, OPT, "CMOS process node of the figures"),
    "supply_voltage": ("chip", "V", float, NONNEG, CHIP + CONV, OPT, "supply voltage the energy figures refer to"),
    "cores_per_chip": ("chip", "cores", int, POS, CHIP, REQ, "neuromorphic cores per chip"),
    "tiles_per_chip": ("chip", "tiles", int, POS, CHIP, REQ, "mesh tiles per chip"),
    "cores_per_tile": ("chip", "cores", int, POS, CHIP, REQ, "neuromorphic cores per mesh tile"),
    "mesh_columns": ("chip", "tiles", int, POS, CHIP, REQ, "tiles per mesh row (east-west extent)"),
    "x86_cores_per_chip": ("chip", "cores", int, NONNEG, CHIP, OPT, "embedded x86 management cores"),
    "neurons_per_core": ("core", "neurons", int, POS, CHIP, REQ, "neurons (compartments) per core"),
    "synaptic_memory_per_core": ("core", "KiB", float, NONNEG, CHIP, REQ, "synaptic memory per core"),
    "core_memory": ("core", "KiB", float, NONNEG, CHIP, OPT, "all memory per core"),
    "routing_memory_per_core": ("core", "KiB", float, NONNEG, CHIP, OPT, "routing-table memory per core"),
    "fan_in_axons_per_core": ("core", "axons", int, POS, CHIP, REQ, "input axons (fan-in slots) per core"),
    "fan_out_axons_per_core": ("core", "axons", int, POS, CHIP, REQ, "output axons (core-to-core edges) per core"),
    "weight_bits": ("precision", "bit", int, (1, 64), CHIP, REQ, "synaptic weight width"),
    "weight_exponent_min": ("precision", "log2", int, (-64, 64), CHIP, REQ, "smallest shared weight exponent"),
    "weight_exponent_max": ("precision", "log2", int, (-64, 64), CHIP, REQ, "largest shared weight exponent"),
    "decay_bits": ("precision", "bit", int, (1, 64), CHIP, REQ, "current/voltage decay constant width"),
    "state_bits": ("precision", "bit", int, (1, 64), CHIP, REQ, "neuron state (u, v) width"),
    "threshold_bits": ("precision", "bit", int, (1, 64), CHIP, REQ, "threshold mantissa width"),
    "threshold_shift": ("precision", "bit", int, (0, 64), CHIP, OPT, "left shift of the threshold mantissa"),
    "activation_shift": ("precision", "bit", int, (0, 64), CHIP, OPT, "left shift of the input into u"),
    "bias_mantissa_bits": ("precision", "bit", int, (1, 64), CHIP, REQ, "bias mantissa width"),
    "bias_exponent_bits": ("precision", "bit", int, (0, 64), CHIP, REQ, "bias exponent width"),
    "input_bits": ("precision", "bit", int, (1, 64), CHIP, REQ, "accumulated synaptic input (a_in) width"),
    "synaptic_delay_bits": ("precision", "bit", int, (0, 64), CHIP, OPT, "per-synapse delay width"),
    "spike_message_bits": ("precision", "bit", int, (1, 256), CHIP, OPT, "width of one spike message"),
    "graded_spike_payload_bits": ("precision", "bit", int, (0, 64), CHIP, REQ,
                                  "graded-spike payload width; 0 = binary spikes only"),
    "synaptic_op_energy": ("energy", "pJ", float, NONNEG, CHIP, REQ, "energy per synaptic spike op"),
    "synaptic_update_energy": ("energy", "pJ", float, NONNEG, CHIP, OPT, "energy per synaptic (learning) update"),
    "neuron_update_energy_active": ("energy", "pJ", float, NONNEG, CHIP, REQ, "energy per active neuron update"),
    "neuron_update_energy_inactive": ("energy", "pJ", float, NONNEG, CHIP, REQ, "energy per idle neuron update"),
    "spike_energy_within_tile": ("energy", "pJ", float, NONNEG, CHIP, REQ, "energy per spike within a tile"),
    "tile_hop_energy_ew": ("energy", "pJ", float, NONNEG, CHIP, REQ, "energy per east-west tile hop"),
    "tile_hop_energy_ns": ("energy", "pJ", float, NONNEG, CHIP, REQ, "energy per north-south tile hop"),
    "message_energy": ("energy", "pJ", float, NONNEG, CHIP, OPT,
                       "energy per message one core sends another (one per spike and destination core)"),
    "static_power_per_chip": ("energy", "mW", float, NONNEG, CHIP, OPT, "static (leakage) power per chip"),
    "mac_energy": ("energy", "pJ", float, NONNEG, CONV, REQ, "energy per fp32 multiply-accumulate"),
    "ac_energy": ("energy", "pJ", float, NONNEG, CONV, REQ, "energy per fp32 accumulate"),
    "mac_energy_int8": ("energy", "pJ", float, NONNEG, CONV, OPT, "energy per int8 multiply-accumulate"),
    "mac_energy_int32": ("energy", "pJ", float, NONNEG, CONV, OPT, "energy per int32 multiply-accumulate"),
    "ac_energy_int32": ("energy", "pJ", float, NONNEG, CONV, OPT, "energy per int32 accumulate"),
    "synaptic_op_time": ("time", "ns", float, NONNEG, CHIP, REQ, "time per synaptic spike op"),
    "synaptic_update_time": ("time", "ns", float, NONNEG, CHIP, OPT, "time per synaptic (learning) update"),
    "neuron_update_time_active": ("time", "ns", float, NONNEG, CHIP, REQ, "time per active neuron update"),
    "neuron_update_time_inactive": ("time", "ns", float, NONNEG, CHIP, REQ, "time per idle neuron update"),
    "spike_latency_within_tile": ("time", "ns", float, NONNEG, CHIP, REQ, "latency of a spike within a tile"),
    "tile_hop_latency_ew": ("time", "ns", float, NONNEG, CHIP, REQ, "latency per east-west tile hop"),
    "tile_hop_latency_ns": ("time", "ns", float, NONNEG, CHIP, REQ, "latency per north-south tile hop"),
    "barrier_sync_time_one_tile": ("time", "ns", float, NONNEG, CHIP, REQ, "timestep barrier over one tile"),
    "barrier_sync_time_full_chip": ("time", "ns", float, NONNEG, CHIP, REQ, "timestep barrier over all tiles"),
    "barrier_sync_time_by_tiles": ("time", "ns", dict, NONNEG, CHIP, OPT,
                                   "timestep barrier by tiles in use: {tiles: ns}, the entry for the most tiles "
                                   "not above those in use applies"),
    "message_time": ("time", "ns", float, NONNEG, CHIP, OPT, "sender-side time per message sent"),
    "message_receive_time": ("time", "ns", float, NONNEG, CHIP, OPT, "receiver-side time per message received"),
    "spike_bandwidth_per_tile": ("time", "Gspike/s", float, NONNEG, CHIP, OPT, "cross-sectional spike bandwidth"),
}.items()}
SECTIONS = tuple(dict.fromkeys(k.section for k in SCHEMA.values()))


class TargetError(ValueError):
    """A target file is invalid; the message names the file and lists every problem."""

    def __init__(self, path: Path | str, problems: list[str]):
        self.path, self.problems = Path(path), list(problems)
        super().__init__(f"{path}: invalid target:\n  - " + "\n  - ".join(self.problems))


def _figures(self) -> dict[str, Figure]:
    """The figures this target gives, by key."""
    return {k: getattr(self, k) for k in SCHEMA if getattr(self, k) is not None}


Target = dataclasses.make_dataclass(
    "Target",
    [("name", str), ("kind", str), ("description", str), ("path", Path),
     ("chip_target", "str | None", dataclasses.field(default=None, metadata={"doc": "a system's chip target"}))]
    + [(k, "Figure | None", dataclasses.field(default=None, metadata={"doc": s.doc, "unit": s.unit}))
       for k, s in SCHEMA.items()],
    frozen=True, namespace={"figures": _figures, "__module__": __name__},
)
Target.__doc__ = ("One hardware target, energy convention or system: name, kind, description, the file it came "
                  "from, a system's chip target, and one Figure (or None) per SCHEMA key.")


def _figure(where: str, raw, key: Key, problems: list[str]) -> Figure | None:
    if not isinstance(raw, dict):
        problems.append(f"{where}: expected a table with value, unit, source and status")
        return None
    before = len(problems)
    problems += [f"{where}.{a}: unknown attribute (known: {', '.join(FIGURE_KEYS)})" for a in raw
                 if a not in FIGURE_KEYS]
    problems += [f"{where}.{a}: missing" for a in FIGURE_KEYS[:4] if a not in raw]
    value, unit, status = raw.get("value"), raw.get("unit"), raw.get("status")
    if "value" in raw and key.type is dict:
        value = _table(f"{where}.value", value, key, problems)
    elif "value" in raw:
        numeric = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        if not numeric or (key.type is int and not isinstance(value, int)):
            problems.append(f"{where}.value: expected {key.type.__name__}, got {value!r}")
        elif key.bounds[0] is not None and value < key.bounds[0]:
            problems.append(f"{where}.value: {value} is below the minimum {key.bounds[0]}")
        elif key.bounds[1] is not None and value > key.bounds[1]:
            problems.append(f"{where}.value: {value} is above the maximum {key.bounds[1]}")
    if "unit" in raw and unit != key.unit:
        problems.append(f"{where}.unit: {unit!r} is not the unit of this figure, {key.unit!r}")
    for attr in ("source", "note"):
        if attr in raw and not (isinstance(raw[attr], str) and raw[attr].strip()):
            problems.append(f"{where}.{attr}: must be a non-empty string")
    if "status" in raw and not (isinstance(status, str) and status in STATUSES):
        problems.append(f"{where}.status: {status!r} is not one of {', '.join(STATUSES)}")
    if isinstance(status, str) and status in NEEDS_NOTE and not raw.get("note"):
        problems.append(f"{where}.note: required when status is {status!r} (say how or whence)")
    if len(problems) > before:
        return None
    return Figure(value if key.type is dict else key.type(value), unit, raw["source"].strip(), status,
                  raw.get("note", "").strip())


def _table(where: str, value, key: Key, problems: list[str]) -> dict[int, float] | None:
    """A table figure's value: TOML ``{"1" = 600, "4" = 1400}`` -> ``{1: 600.0, 4: 1400.0}``."""
    if not isinstance(value, dict) or not value:
        problems.append(f"{where}: expected a non-empty table of {{count = value}}, got {value!r}")
        return None
    table = {}
    for k, v in value.items():
        if not (k.isdigit() and int(k) >= 1):
            problems.append(f"{where}.{k}: the key must be a positive integer count")
        elif not (isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
                  and (key.bounds[0] is None or v >= key.bounds[0])):
            problems.append(f"{where}.{k}: expected a number >= {key.bounds[0]}, got {v!r}")
        else:
            table[int(k)] = float(v)
    return dict(sorted(table.items()))


def parse_target(raw: dict, path: Path | str) -> Target:
    """Check a parsed TOML document against SCHEMA; raise TargetError listing every problem."""
    path, problems, figures = Path(path), [], {}
    for attr in ("name", "kind", "description"):
        if not (isinstance(raw.get(attr), str) and raw[attr].strip()):
            problems.append(f"{attr}: a non-empty string is required")
    name, kind = raw.get("name"), raw.get("kind")
    if isinstance(name, str) and name != path.stem:
        problems.append(f"name: {name!r} must equal the file name {path.stem!r}")
    if isinstance(kind, str) and kind not in KINDS:
        problems.append(f"kind: {kind!r} is not one of {', '.join(KINDS)}")
    chip = raw.get("chip_target")
    if kind == "system" and not (isinstance(chip, str) and chip.strip()):
        problems.append("chip_target: a system names its chip target (a non-empty string)")
    elif kind != "system" and "chip_target" in raw:
        problems.append("chip_target: only a system names a chip target")
    for top, body in raw.items():
        if top in ("name", "kind", "description", "chip_target"):
            continue
        if top not in SECTIONS:
            problems.append(f"{top}: unknown top-level key (known: name, kind, description, chip_target, "
                            f"and the sections {', '.join(SECTIONS)})")
            continue
        if not isinstance(body, dict):
            problems.append(f"{top}: expected a section of figure tables, got {body!r}")
            continue
        for k, fig in body.items():
            where, spec = f"{top}.{k}", SCHEMA.get(k)
            if spec is None:
                known = ", ".join(n for n, s in SCHEMA.items() if s.section == top)
                problems.append(f"{where}: unknown key (known in [{top}]: {known})")
            elif spec.section != top:
                problems.append(f"{where}: belongs in [{spec.section}], not [{top}]")
            elif kind in KINDS and kind not in spec.kinds:
                problems.append(f"{where}: not a figure of kind {kind!r} (only of {', '.join(spec.kinds)})")
            else:
                figures[k] = _figure(where, fig, spec, problems)
    if kind in KINDS:
        problems += [f"{s.section}.{k}: missing (required for kind {kind!r}: {s.doc}, in {s.unit})"
                     for k, s in SCHEMA.items() if s.required and kind in s.kinds and k not in figures]
    if problems:
        raise TargetError(path, problems)
    return Target(name=name, kind=kind, description=raw["description"].strip(), path=path, chip_target=chip,
                  **figures)


def list_targets() -> list[str]:
    """Names of the shipped targets (``targets/*.toml``)."""
    return sorted(p.stem for p in shipped_dir("targets").glob("*.toml"))


def system_chips(system: str | Path, chip: Target) -> int:
    """The chips of a named system (``kapoho-point``) of ``chip``'s kind; a TargetError names what is wrong."""
    found = load_target(system)
    if found.kind != "system":
        raise TargetError(found.path, [f"{found.name!r} is a {found.kind}, not a system of chips"])
    if found.chip_target != chip.name:
        raise TargetError(found.path, [f"system {found.name!r} is made of {found.chip_target!r} chips, not "
                                       f"{chip.name!r}"])
    return found.chips_per_system.value


def load_target(name_or_path: str | Path | Target) -> Target:
    """A shipped target by name (``"loihi1"``) or any target file by path; a ``Target`` as it is."""
    if isinstance(name_or_path, Target):
        return name_or_path
    path = Path(name_or_path)
    if not isinstance(name_or_path, Path) and path.suffix != ".toml" and len(path.parts) == 1:
        path = shipped_dir("targets") / f"{name_or_path}.toml"
        if not path.is_file():
            raise TargetError(path, [f"no shipped target {name_or_path!r} (shipped: {', '.join(list_targets())})"])
    try:
        raw = tomli.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise TargetError(path, [f"cannot read: {e.strerror}"]) from None
    except tomli.TOMLDecodeError as e:
        raise TargetError(path, [f"not valid TOML: {e}"]) from None
    return parse_target(raw, path.resolve())
