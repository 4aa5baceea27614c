"""`snncompile report`: loading and checking a run report, re-pricing it, the terminal tables and the HTML
page's text (the page in a browser: test_report_html.py). Reports are built by hand (report_fixture.py)."""
import io
import json
import re
import sys
from pathlib import Path

import pytest
from report_fixture import ATTENTION_LIF, SAMPLES, run_report, version_1
from rich.console import Console
from typer.testing import CliRunner

from snncompile import cli
from snncompile.report.cost import price
from snncompile.report.document import JSON_SCHEMA, ReportError, load_report, reprice, validate
from snncompile.report.render import render_html, render_terminal

ROOT = Path(__file__).resolve().parents[1]


def terminal_text(report: dict) -> str:
    console = Console(record=True, width=250, file=io.StringIO())
    for table in render_terminal(report):
        console.print(table)
    return console.export_text()


def write(tmp_path: Path, report, name: str = "statten-digits.report.json") -> Path:
    path = tmp_path / name
    path.write_text(report if isinstance(report, str) else json.dumps(report))
    return path


def test_terminal_tables_show_the_key_numbers_with_figure_statuses():
    report = run_report()
    text = terminal_text(report)
    for expected in ("statten-digits", "98.61%", "98.33%", "8/8 samples identical", "3 cores on 1 chip",
                     ATTENTION_LIF, "0.0501", "0.0428", "0.9775", "block.0.attn.core.kv", "KVOuterAccumulate",
                     "synaptic_op_energy", "23.6 pJ", "unpriced", "host_MACs", "ANN_MACs", "stem.lif"):
        assert expected in text, expected
    total = f"{report['energy']['loihi2']['total_pj'] / 1e3:.2f} nJ"  # 186,312 pJ
    assert re.search(rf"energy per sample, loihi2 +│ {re.escape(total)} \[proxy\]", text)
    assert "energy per sample: cmos45 [derived, documented]" in text  # statuses beside every priced number
    assert "energy/sample loihi2 [proxy]" in text and "96.52 nJ" in text  # stem.lif's per-node energy
    per_sample_acs = report["activity"]["totals"]["ACs"] / SAMPLES
    assert f"{per_sample_acs:,.0f}" in text
    assert "latency on loihi2 [proxy]" in text and "22.07 us" in text
    assert "64/8,192 (1%)" in text and "4,608/196,608 (2%)" in text


def test_a_version_1_report_is_read_and_shown_without_the_version_2_fields():
    report = validate(version_1(run_report()))
    text = terminal_text(report)
    assert "snncompile-run-report/1" in text and "0.9775" in text and "latency" not in text
    page = render_html(report)
    assert 'id="plot-energy-by-layer"' in page and "no per-node energy" in page
    assert 'id="plot-core-utilisation"' in page and "no per-core placement" in page


def test_the_lava_stock_share_is_shown_where_the_report_has_it():
    share = {"synaptic_ops": {"stock": 3, "total": 4, "fraction": 0.75},
             "neuron_updates": {"stock": 0, "total": 0, "fraction": None}}
    report = validate({**run_report(), "lava": {**run_report()["lava"], "stock_share": share,
                                                "processes": {"stem.lif": {"per_op": "LIF"}}}})
    assert "75.0% of synaptic ops, - of neuron updates" in terminal_text(report)
    assert "Lava's own processes" not in terminal_text(validate(run_report()))


@pytest.mark.parametrize("content, message", [
    ({**run_report(), "schema": "snncompile-run-report/9"}, "schema 'snncompile-run-report/9' is not one"),
    ({"model": "x"}, "not a run report (no 'schema' field"),
    ([1, 2], "not a run report"),
    ('{"schema": "snncompile-run-report/2", ', "not valid JSON"),
    ({k: v for k, v in run_report().items() if k != "energy"}, "report: 'energy' is a required property"),
    ({**run_report(), "lava": {"accuracy": 1.0}}, "lava: 'total' is a required property"),
    ({**run_report(), "lava": {**run_report()["lava"], "stock_share": {"synaptic_ops": {"stock": 1, "total": 2}}}},
     "lava.stock_share: 'neuron_updates' is a required property"),
    ({**run_report(), "layers": [{"node": "a", "float_rate": "high", "integer_rate": 0.1, "agreement": 1}]},
     "layers[0].float_rate: 'high' is not of type 'number'"),
    ({**run_report(), "test_samples": True}, "test_samples: True is not of type 'integer'"),
])
def test_load_report_refuses_what_it_cannot_read_naming_the_file(tmp_path, content, message):
    path = write(tmp_path, content)
    with pytest.raises(ReportError) as caught:
        load_report(path)
    assert str(path) in str(caught.value) and message in str(caught.value)


def test_load_report_of_a_missing_file_names_it(tmp_path):
    with pytest.raises(ReportError, match="nothing.json: cannot read"):
        load_report(tmp_path / "nothing.json")


def test_reprice_prices_the_stored_counts_for_another_target():
    report = run_report()
    repriced = reprice(report, "loihi1")
    totals = report["activity"]["totals"]
    assert repriced["energy"]["loihi1"] == price(totals, SAMPLES, "loihi1").to_dict()
    assert list(repriced["energy"]) == ["loihi1", "loihi2", "cmos45", "ann"]
    assert repriced["energy"]["loihi2"] == report["energy"]["loihi2"] and "loihi1" not in report["energy"]
    assert "energy per sample: loihi1 [pre-silicon]" in terminal_text(repriced)


def test_reprice_for_an_unknown_target_is_a_report_error():
    with pytest.raises(ReportError, match="no shipped target 'nochip'"):
        reprice(run_report(), "nochip")


def test_report_command_shows_writes_html_and_repriced_json(tmp_path):
    path = write(tmp_path, run_report())
    out = tmp_path / "repriced.json"
    result = CliRunner().invoke(cli.app, ["report", str(path), "--target", "loihi1", "--json", str(out)],
                                env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    html = tmp_path / "statten-digits.report.html"
    assert "98.61%" in result.output and f"HTML page with plots: {html}" in " ".join(result.output.split())
    assert html.read_text().startswith("<!DOCTYPE html>")
    written = json.loads(out.read_text())
    assert written == json.loads(json.dumps(reprice(run_report(), "loihi1")))
    assert validate(written)["energy"]["loihi1"]["target"] == "loihi1"


def test_report_command_error_is_one_line_not_a_traceback(tmp_path, monkeypatch, capsys):
    path = write(tmp_path, {**run_report(), "schema": "other/1"})
    monkeypatch.setattr(sys, "argv", ["snncompile", "report", str(path)])
    with pytest.raises(SystemExit) as caught:
        cli.main()
    out = capsys.readouterr().out
    assert caught.value.code == cli.EXIT_USER_ERROR
    assert "error:" in out and "schema 'other/1'" in out and "Traceback" not in out


def test_html_is_self_contained_and_escapes_report_text():
    page = render_html(run_report(attention_lif="<script>alert(1)</script>"))
    assert "<script" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    # the only URLs are SVG namespace names, which nothing fetches
    namespaces = {"http://www.w3.org/2000/svg", "http://www.w3.org/1999/xlink"}
    assert set(re.findall(r"https?://[^\"' )]+", page)) <= namespaces
    assert not re.search(r"""(src|href)=["'](?!#|data:)""", page)
    for plot in ("firing-rate", "agreement", "synaptic-ops", "energy-by-op", "energy-by-layer", "core-utilisation",
                 "step-latency"):
        assert f'<figure id="plot-{plot}">' in page


def test_every_schema_field_is_documented():
    doc = (ROOT / "docs" / "report_schema.md").read_text()

    def names(rule: dict):
        for key, sub in rule.get("properties", {}).items():
            yield key
            yield from names(sub)
        for sub in (rule.get("items"), rule.get("additionalProperties")):
            if isinstance(sub, dict):
                yield from names(sub)

    rules = [JSON_SCHEMA, *JSON_SCHEMA["$defs"].values()]
    undocumented = {n for rule in rules for n in names(rule) if f"`{n}`" not in doc}
    assert not undocumented
