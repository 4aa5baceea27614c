"""`snncompile report`: loading and checking a run report, re-pricing it, the terminal tables and the HTML
page's text (the page in a browser: test_report_html.py). Reports are built by hand (report_fixture.py)."""
import io
import json
import re
import sys
from pathlib import Path

import pytest
from report_fixture import run_report, version_1
from rich.console import Console
from typer.testing import CliRunner

from snncompile import cli
from snncompile.report.cost import price_nodes
from snncompile.report.document import JSON_SCHEMA, ReportError, load_report, reprice, validate
from snncompile.report.render import render_html, render_terminal
from snncompile.report.tables import cited, headline, node_energy, pj, tables

ROOT = Path(__file__).resolve().parents[1]


def terminal_text(report: dict, width: int = 250, details: bool = True) -> str:
    console = Console(record=True, width=width, file=io.StringIO())
    for table in render_terminal(report, details=details):
        console.print(table)
    return console.export_text()


def write(tmp_path: Path, report, name: str = "statten-digits.report.json") -> Path:
    path = tmp_path / name
    path.write_text(report if isinstance(report, str) else json.dumps(report))
    return path


LONG_LIF = "block.11.attn.shortcut_lif"  # as long as the node names of a real model


def nodes(report: dict) -> list[str]:
    activity = report["activity"]
    return [*activity["spikes"], *activity["synapses"], *activity["attention"]]


def test_the_headline_fits_80_columns_with_the_key_figures_and_nothing_long():
    report = run_report(attention_lif=LONG_LIF)
    text = terminal_text(report, width=80, details=False)
    lines = text.splitlines()
    assert max(map(len, lines)) <= 80 and "…" not in text
    # one line per row: nothing wraps (title, 14 rows, the hint)
    assert len(lines) == 1 + len(headline(report).rows) + 1 == 16
    loihi2, cmos45 = report["energy"]["loihi2"], report["energy"]["cmos45"]
    for expected in ("run report: statten-digits on loihi2", "float 98.61%, integer 98.33% (360 test samples)",
                     "8/8 samples identical to the reference (fused); accuracy 100.00%",
                     "3 cores on 1 chip of loihi2; no design-rule violation", "lower bound 3 cores (1.0x used)",
                     "neurons 3%, synaptic memory 2%, fan-in 6%, fan-out 8%",
                     f"loihi2: {loihi2['total_pj'] / 1e3:.2f} nJ/sample [calibrated, proxy]; 1 count unpriced",
                     f"cmos45: {cmos45['total_pj'] / 1e3:.2f} nJ/sample [derived, documented]; 3 counts unpriced",
                     "loihi2: 22.07 us/sample, 45,316 samples/s [calibrated, proxy]",
                     "report: runs/statten-digits.report.json", "page: runs/statten-digits.report.html",
                     "graph: runs/statten-digits.loihi.snnir", "--details"):
        assert expected in text, expected
    assert not any(re.search(rf"^{re.escape(node)} ", text, re.MULTILINE) for node in nodes(report))  # --details


def test_the_headline_shows_the_lower_bound_beside_the_cores_used():
    report = run_report()
    report["placement"].update(lower_bound=2, lower_bound_by_resource={"neurons": 1, "synaptic memory": 1,
                                                                        "input axons": 2, "kernels and windows": 0})
    text = terminal_text(validate(report), width=80, details=False)
    assert "3 cores on 1 chip of loihi2" in text and "lower bound 2 cores (1.5x used)" in text
    assert max(map(len, text.splitlines())) <= 80


def test_the_details_fit_80_columns_and_never_cut_a_node_name():
    report = run_report(attention_lif=LONG_LIF)
    text = terminal_text(report, width=80)
    assert max(map(len, text.splitlines())) <= 80 and "…" not in text
    for node in nodes(report):  # each whole, on one line
        assert re.search(rf"^{re.escape(node)} ", text, re.MULTILINE), node
    for expected in ("0.0501", "0.0428", "0.9775", "KVOuterAccumulate", "21.5775 pJ", "ANN_MACs",
                     "latency on loihi2 [calibrated, proxy]", "energy per sample: cmos45 [derived, documented]"):
        assert expected in text, expected
    assert "core utilisation" not in text and "lava_loihi" not in text  # on the page only


def test_energy_per_node_says_unpriced_never_zero_where_the_target_has_no_figure():
    report = run_report()
    (by_node,) = [rows for rows in tables(report) if rows.key == "energy-by-node"]
    cells = {row[0]: dict(zip(by_node.columns[1:], row[1:])) for row in by_node.rows}
    loihi2, cmos45 = "loihi2 [calibrated, proxy]", "cmos45 [derived, documented]"
    assert report["energy"]["loihi2"]["per_node_pj"]["stem.conv.host"] == 0  # the host's MACs: no chip figure
    assert cells["stem.conv.host"][loihi2] == "unpriced" and cells["stem.lif"][cmos45] == "unpriced"
    assert cells["stem.lif"][loihi2] == pj(report["energy"]["loihi2"]["per_node_pj"]["stem.lif"])
    assert not any("0.00 pJ" in cell for row in by_node.rows for cell in row)
    entry = {**report["energy"]["loihi2"], "unpriced": ["spikes"]}  # a node priced in part
    assert node_energy(report["activity"], entry, "stem.lif").endswith(" + unpriced")


def test_a_version_1_report_is_read_and_shown_without_the_version_2_fields():
    report = validate(version_1(run_report()))
    text = terminal_text(report)
    assert "run report: statten-digits on loihi2" in text and "0.9775" in text and "latency" not in text
    page = render_html(report)
    assert "schema snncompile-run-report/1" in page
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


def test_reprice_prices_the_stored_counts_for_another_target_and_says_what_it_leaves_out():
    report = run_report()
    repriced = reprice(report, "loihi1")
    assert repriced["energy"]["loihi1"] == {**price_nodes(report["activity"], "loihi1").to_dict(),
                                            "left_out": ["hops_ew", "hops_ns"]}
    assert list(repriced["energy"]) == ["loihi1", "loihi2", "cmos45", "ann"] and repriced["repriced_for"] == "loihi1"
    assert repriced["energy"]["loihi2"] == report["energy"]["loihi2"] and "loihi1" not in report["energy"]
    text = terminal_text(validate(repriced), width=80)
    assert "run report: statten-digits on loihi2, energy re-priced for loihi1" in text
    assert "left out: hops_ew, hops_ns (need a placement on loihi1)" in text
    assert "energy per sample: loihi1 [pre-silicon]" in text
    assert re.search(r"^hops_ew +- +- +left out", text, re.MULTILINE)
    assert "statten-digits on loihi2, energy re-priced for loihi1" in render_html(repriced)


def test_repricing_for_the_reports_own_target_keeps_its_mesh_and_static_terms():
    report = run_report()
    assert reprice(report, "loihi2")["energy"] == report["energy"]


def test_reprice_for_an_unknown_target_is_a_report_error():
    with pytest.raises(ReportError, match="no shipped target 'nochip'"):
        reprice(run_report(), "nochip")


def test_report_command_shows_writes_html_and_repriced_json(tmp_path):
    path = write(tmp_path, run_report())
    out = tmp_path / "repriced.json"
    result = CliRunner().invoke(cli.app, ["report", str(path), "--target", "loihi1", "--json", str(out)],
                                env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    html = tmp_path / "statten-digits.report.html"
    assert "98.61%" in result.output and f"HTMLpagewithplots:{html}" in "".join(result.output.split())
    assert "energy re-priced for loihi1" in result.output and "left out: hops_ew, hops_ns" in result.output
    assert "block.0.attn.q_conv" not in result.output  # the per-node tables: --details
    assert html.read_text().startswith("<!DOCTYPE html>")
    written = json.loads(out.read_text())
    assert written == json.loads(json.dumps(reprice(run_report(), "loihi1")))
    assert validate(written)["energy"]["loihi1"]["target"] == "loihi1"
    details = CliRunner().invoke(cli.app, ["report", str(path), "--details"], env={"COLUMNS": "80"})
    assert details.exit_code == 0 and "block.0.attn.q_conv" in details.output


def test_report_command_error_is_one_line_not_a_traceback(tmp_path, monkeypatch, capsys):
    path = write(tmp_path, {**run_report(), "schema": "other/1"})
    monkeypatch.setattr(sys, "argv", ["snncompile", "report", str(path)])
    with pytest.raises(SystemExit) as caught:
        cli.main()
    captured = capsys.readouterr()
    out = captured.out + captured.err
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


def test_the_page_has_contents_linking_every_plot_and_table():
    page = render_html(run_report())
    contents = re.search(r'<nav id="contents">(.*?)</nav>', page).group(1)
    links = re.findall(r'href="#([^"]+)"', contents)
    ids = re.findall(r'<(?:figure|table) id="([^"]+)"', page)
    assert links == ids and len(ids) >= 18
    assert {"plot-step-latency", "table-cores", "table-figures", "table-summary"} <= set(ids)


def test_the_page_cites_papers_tools_and_target_files_never_notes_outside_the_repository():
    report = run_report()
    assert not re.search(r"\w+\.md\b", json.dumps(report))  # the targets' sources cite papers and tools
    page = render_html(report)
    assert not re.search(r"\w+\.md\b", page)
    (figures,) = [rows for rows in tables(report) if rows.key == "figures"]
    sources = {row[1]: (row[5], row[6]) for row in figures.rows}
    assert sources["synaptic_op_energy"] == ("Intel's Loihi 2 measurement of PilotNet LIF, lava-dl tutorial "
                                             "tutorials/lava/lib/dl/netx/pilotnet_snn/benchmark.ipynb (github.com/lava-nc/"
                                             "lava-dl, commit d825ac5): 74 cores, 152.8 us per step, 0.232078 W static "
                                             "per chip, 1.093544 mJ dynamic per inference", "targets/loihi2.toml")
    assert sources["mac_energy"][1] == "targets/cmos45.toml"
    assert all((ROOT / file).is_file() for _, file in sources.values())
    assert cited("MatMul-free LLM on Loihi 2 paper, as cited in lava_loihi.md §6.2 ('8-bit by default')") == \
        "MatMul-free LLM on Loihi 2 paper ('8-bit by default')"


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


def test_the_headline_names_sdt_v3_by_its_stages_not_by_unused_fields():
    report = run_report()
    report["checkpoint"]["config"] = {"backbone": "sdt-v3", "attention": "STAtten", "dim": 256, "layers": 2,
                                      "num_heads": 4, "time_steps": 1, "stage_dims": "16,32,64,64",
                                      "stage_layers": "2,1"}
    text = terminal_text(report, width=80, details=False)
    assert "statten-digits: sdt-v3, widths 16,32,64,64, blocks 2,1, 4 heads, T=1" in text  # not "STAtten, dim 256"
