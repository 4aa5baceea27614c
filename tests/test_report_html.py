"""The HTML page of `snncompile report` in headless Chromium (Debian's `chromium` package, driven by the
`playwright` Python package with that browser, never a downloaded one): it renders without console or page
errors, every plot is an SVG with a size, nothing is fetched from outside the file, report text cannot
inject script, its contents lead to every plot and table, and its axes read in sensible units."""
from pathlib import Path

import pytest
from report_fixture import run_report

from snncompile.report.render import render_html

CHROMIUM = Path("/usr/bin/chromium")
# no network, no sandbox (root in a container), nothing started in the background
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
PLOTS = ("plot-firing-rate", "plot-agreement", "plot-synaptic-ops", "plot-energy-by-op", "plot-energy-by-layer",
         "plot-core-utilisation", "plot-step-latency")
INJECTION = "<script>alert(1)</script>"


@pytest.fixture(scope="module")
def browser():
    # a missing browser fails rather than skips: CI must run this test
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} not found: install Debian's Chromium with "
                    "`apt-get update && apt-get install -y --no-install-recommends chromium`")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("the playwright package is missing: `.venv/bin/pip install -c .ci/constraints.txt playwright` "
                    "(no `playwright install`: the test uses /usr/bin/chromium)")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield launched
        launched.close()


def open_page(browser, tmp_path: Path, report: dict):
    """The report's page opened from a file, with what it logged, fetched and tried to pop up."""
    path = tmp_path / "report.html"
    path.write_text(render_html(report), encoding="utf-8")
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    seen = {"errors": [], "requests": [], "dialogs": []}
    page.on("console", lambda message: message.type == "error" and seen["errors"].append(message.text))
    page.on("pageerror", lambda error: seen["errors"].append(str(error)))
    page.on("request", lambda request: seen["requests"].append(request.url))
    page.on("dialog", lambda dialog: (seen["dialogs"].append(dialog.message), dialog.dismiss()))
    page.goto(path.as_uri(), wait_until="load")
    return page, seen


def test_report_page_renders_every_plot_without_errors(browser, tmp_path):
    page, seen = open_page(browser, tmp_path, run_report())
    assert seen["errors"] == []
    assert all(url.startswith(("file:", "data:")) for url in seen["requests"]), seen["requests"]
    assert "statten-digits" in page.title() and "statten-digits" in page.locator("h1").inner_text()
    for plot in PLOTS:
        svg = page.locator(f"figure#{plot} svg")
        assert svg.count() == 1, plot
        box = svg.bounding_box()
        assert box and box["width"] > 100 and box["height"] > 100, (plot, box)
    assert "proxy" in page.locator("#table-figures").inner_text()
    page.close()


def test_report_text_is_shown_literally_never_run(browser, tmp_path):
    page, seen = open_page(browser, tmp_path, run_report(attention_lif=INJECTION))
    assert seen["dialogs"] == [] and seen["errors"] == []
    assert page.evaluate("document.scripts.length") == 0
    assert INJECTION in page.locator("#table-layers").inner_text()
    assert INJECTION in page.locator("figure#plot-firing-rate svg").text_content()
    page.close()


def test_the_contents_lead_to_every_plot_and_table(browser, tmp_path):
    page, seen = open_page(browser, tmp_path, run_report())
    links = page.locator("nav#contents a")
    targets = [href.removeprefix("#") for href in links.evaluate_all("links => links.map(a => a.getAttribute('href'))")]
    assert set(PLOTS) | {"table-summary", "table-layers", "table-cores", "table-figures"} <= set(targets)
    assert page.evaluate("ids => ids.filter(id => !document.getElementById(id))", targets) == []
    assert page.evaluate("document.documentElement.scrollHeight") > 3 * 900  # many windows tall
    for target in ("plot-energy-by-op", "table-cores"):  # the link scrolls its target into the window
        page.locator(f'nav#contents a[href="#{target}"]').click()
        top = page.evaluate(f"document.getElementById('{target}').getBoundingClientRect().top")
        assert page.evaluate("window.scrollY") > 900 and -5 < top < 900, (target, top)
    page.locator("#table-cores caption a.up").click()
    assert abs(page.evaluate("document.getElementById('contents').getBoundingClientRect().top")) < 5
    assert seen["errors"] == []
    page.close()


def test_step_latency_reads_in_microseconds_over_whole_steps_and_cores_show_their_fan(browser, tmp_path):
    page, _ = open_page(browser, tmp_path, run_report())  # steps of 1,210 to 6,340 ns
    steps = page.locator("figure#plot-step-latency svg")
    assert "time per step (us)" in steps.text_content() and "6340" not in steps.text_content()
    ticks = steps.locator("g[id^='plot-step-latency-xtick_'] text").all_text_contents()
    assert ticks and all(tick.isdigit() for tick in ticks), ticks  # whole time steps, never 0.5
    legend = page.locator("figure#plot-core-utilisation svg g[id$='legend_1']").text_content()
    for resource in ("neurons", "synaptic memory", "fan-in", "fan-out"):
        assert resource in legend, resource
    page.close()
