"""The run report as a document (the JSON ``snncompile run`` writes; schema ``snncompile-run-report/1`` or
``/2``, every field in docs/report_schema.md): :func:`load_report` reads and checks one against
``run_report.schema.json`` (jsonschema), :func:`validate` checks one in memory, :func:`reprice` prices its
stored counts for another target without re-simulating. Showing it: :mod:`.render`.
"""
from __future__ import annotations

import json
from pathlib import Path

from jsonschema import Draft202012Validator

from .cost import price, price_nodes

JSON_SCHEMA = json.loads(Path(__file__).with_name("run_report.schema.json").read_text(encoding="utf-8"))
SCHEMAS = tuple(JSON_SCHEMA["properties"]["schema"]["enum"])
_VALIDATOR = Draft202012Validator(JSON_SCHEMA)
_SHOWN_PROBLEMS = 12


class ReportError(ValueError):
    """A file is not a run report this version reads, or cannot be re-priced; the message says which file."""


def _where(path) -> str:
    """A JSON path as the report's readers write it: ``layers[3].agreement``."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else f".{part}" if out else str(part)
    return out or "report"


def validate(report, source: str = "report") -> dict:
    """``report`` if it is a run report of a known schema version, else a :class:`ReportError` listing every
    problem, each with its place in the file (``layers[3].agreement: expected number``)."""
    if not isinstance(report, dict) or "schema" not in report:
        raise ReportError(f"{source}: not a run report (no 'schema' field; expected one of {', '.join(SCHEMAS)})")
    if report["schema"] not in SCHEMAS:
        raise ReportError(f"{source}: schema {report['schema']!r} is not one this version of snncompile reads "
                          f"({', '.join(SCHEMAS)})")
    errors = sorted(_VALIDATOR.iter_errors(report), key=lambda e: [str(p) for p in e.absolute_path])
    problems = [f"{_where(e.absolute_path)}: {e.message}" for e in errors]
    if problems:
        more = len(problems) - _SHOWN_PROBLEMS
        raise ReportError(f"{source}: not a valid {report['schema']} report:\n  - "
                          + "\n  - ".join(problems[:_SHOWN_PROBLEMS])
                          + (f"\n  ... and {more} more" if more > 0 else ""))
    return report


def load_report(path: Path | str) -> dict:
    """The run report in the JSON file ``path``, checked (:func:`validate`); errors name the file."""
    path = Path(path)
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise ReportError(f"{path}: cannot read: {e.strerror}") from None
    except ValueError as e:  # JSONDecodeError and UnicodeDecodeError
        raise ReportError(f"{path}: not valid JSON: {e}") from None
    return validate(report, str(path))


def reprice(report: dict, target: str) -> dict:
    """A copy of ``report`` whose ``energy[target]`` is priced afresh from the stored counts (``activity``:
    whole-run and, where the report has them, per-node totals), first among the entries, and whose
    ``repriced_for`` names ``target``; the other entries are kept. The latency model's terms (mesh hops,
    messages, static energy) need a placement and a latency on the target: for the report's own target they are
    the stored ones (``latency.energy_pj``, so the entry is the one the run wrote), for another target they are
    left out and listed in the entry's ``left_out``."""
    activity = report["activity"]
    try:
        estimate = (price_nodes(activity, target) if "node_totals" in activity
                    else price(activity["totals"], activity["samples"], target))
    except ValueError as e:  # an unknown or invalid target file, or a report of no samples
        raise ReportError(f"cannot price the report of {report['model']} for {target!r}: {e}") from None
    latency_terms = report.get("latency", {}).get("energy_pj", {})
    if latency_terms and estimate.target == report["latency"]["target"]:
        entry = estimate.plus(latency_terms, report["latency"]["figures"]).to_dict()
    else:
        entry = {**estimate.to_dict(), **({"left_out": sorted(latency_terms)} if latency_terms else {})}
    others = {key: kept for key, kept in report["energy"].items() if key != target}
    return {**report, "repriced_for": target, "energy": {target: entry, **others}}


__all__ = ["JSON_SCHEMA", "SCHEMAS", "ReportError", "load_report", "validate", "reprice"]
