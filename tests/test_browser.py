"""The HTML report opened in a real headless browser (Debian's chromium driven by Playwright).

No console errors, no failed requests (the page is self-contained), every image decoded, the expected tables
present, hostile names shown as text; a screenshot is kept in test-artifacts/. Skipped only when chromium or
Playwright is absent.
"""

import shutil
from pathlib import Path

import pytest

from test_report_helpers import write_run
from test_run_all import DEMO, TINY

CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"

pytestmark = pytest.mark.browser
NEEDS_CHROMIUM = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium; "
                                    ".ci/run installs it)")


def open_report(html: Path, screenshot: Path) -> dict:
    """Load ``html`` in chromium; return what the page did (errors, requests, images, tables, alerts)."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright not installed (pip install playwright)")
    seen: dict = {"console_errors": [], "page_errors": [], "requests": [], "dialogs": []}
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 800})  # a laptop screen
            page.on("console", lambda m: seen["console_errors"].append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: seen["page_errors"].append(str(e)))
            page.on("request", lambda r: seen["requests"].append(r.url))
            page.on("dialog", lambda d: (seen["dialogs"].append(d.message), d.dismiss()))
            page.goto(html.resolve().as_uri(), wait_until="load")
            seen["images"] = page.eval_on_selector_all(
                "img", "els => els.map(e => ({complete: e.complete, width: e.naturalWidth, alt: e.alt}))")
            seen["tables"] = page.eval_on_selector_all("table.comparison", "els => els.map(e => e.dataset.evaluator)")
            seen["first_column"] = page.eval_on_selector_all("table.comparison tbody td:first-child",
                                                             "els => els.map(e => e.textContent)")
            seen["scripts"] = page.eval_on_selector_all("script", "els => els.length")
            seen["too_wide"] = page.eval_on_selector_all(  # comparison tables wider than the page's main column
                "table.comparison", "els => els.filter(e => e.getBoundingClientRect().width > "
                "document.querySelector('main').clientWidth).map(e => e.dataset.evaluator)")
            seen["font_px"] = page.eval_on_selector_all(  # smallest figure text as displayed: natural px x scale
                "img[data-font-px]", "els => els.filter(e => e.getBoundingClientRect().width > 0).map(e => "
                "({alt: e.alt, px: e.getBoundingClientRect().width / e.naturalWidth * parseFloat(e.dataset.fontPx)}))")
            seen["verdict_rows"] = page.eval_on_selector_all("#verdict table.verdict tbody tr", "els => els.length")
            seen["banner"] = page.eval_on_selector_all(".banner", "els => els.map(e => ({text: e.textContent, "
                                                       "top: e.getBoundingClientRect().top, "
                                                       "height: e.getBoundingClientRect().height}))")
            seen["zoom"] = _zoom(page)
            screenshot.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(screenshot), full_page=True)
        finally:
            browser.close()
    return seen


def _zoom(page) -> dict:
    """Widths of the first zoomable figure before, on, and after a second click (CSS only: no script runs)."""
    img = page.query_selector("label.zoom img")
    if img is None:
        return {}
    img.scroll_into_view_if_needed()
    width = lambda: page.evaluate("e => e.getBoundingClientRect().width", img)  # noqa: E731
    before = width()
    page.click("label.zoom img")
    opened = width()
    page.click("label.zoom img", force=True)
    return {"before": before, "opened": opened, "closed": width(), "viewport": 1280}


@NEEDS_CHROMIUM
def test_report_in_headless_chromium(tmp_path):
    from jembench.evaluators.report import report

    hostile = "<script>alert(1)</script>"
    run_a = write_run(tmp_path / "a", name=hostile, dataset="cifar10", sigma=0.03)
    run_b = write_run(tmp_path / "b", name="baseline", dataset="cifar10", accuracy=0.8, sigma=0.03, fail="robust")
    html = tmp_path / "report.html"
    result = report([run_a, run_b], html)
    seen = open_report(html, ARTIFACTS / "report-browser.png")

    assert seen["console_errors"] == [] and seen["page_errors"] == [], seen
    assert seen["dialogs"] == [], "a hostile checkpoint name ran as script"
    assert seen["scripts"] == 0
    assert all(u.startswith(("file:", "data:")) for u in seen["requests"]), seen["requests"]
    assert seen["images"] and all(i["complete"] and i["width"] > 0 for i in seen["images"]), seen["images"]
    assert set(seen["tables"]) == {t.slug for t in result.tables}
    assert any(t.startswith("clf-") for t in seen["tables"]) and any(t.startswith("calib-") for t in seen["tables"])
    assert hostile in seen["first_column"] and "baseline" in seen["first_column"]
    assert "JEMreported" in seen["first_column"]  # the published row, tagged
    assert seen["too_wide"] == []
    assert (ARTIFACTS / "report-browser.png").stat().st_size > 0


@NEEDS_CHROMIUM
@pytest.mark.skipif(not all(p.exists() for p in DEMO), reason="bundled demo checkpoints absent")
def test_real_run_all_report_in_headless_chromium(tmp_path):
    """The figures the evaluators really write (reliability, OOD, robustness, sample grids) all decode."""
    from jembench.evaluators.run_all import run_all

    result = run_all(DEMO, overrides=TINY, out_dir=tmp_path / "out", device="cpu", progress=False)
    assert not result.failed
    seen = open_report(result.html, ARTIFACTS / "report-run-all.png")
    assert seen["console_errors"] == [] and seen["page_errors"] == [], seen
    assert all(u.startswith(("file:", "data:")) for u in seen["requests"]), seen["requests"]
    alts = " ".join(i["alt"] for i in seen["images"])
    assert all(word in alts for word in ("reliability", "roc", "samples")), alts
    assert all(i["complete"] and i["width"] > 0 for i in seen["images"]), seen["images"]
    assert {t.split("-")[0] for t in seen["tables"]} == {"clf", "calib", "ood", "robust", "gen", "density"}
    assert seen["too_wide"] == [], "a comparison table does not fit a 1280-pixel screen"
    # the verdict opens the report; the quick preset's caveat is a visible banner at the top
    assert seen["verdict_rows"] >= 4, seen["verdict_rows"]
    assert seen["banner"] and "not for publication" in seen["banner"][0]["text"]
    assert seen["banner"][0]["height"] > 20 and seen["banner"][0]["top"] < 300
    # every figure's smallest text is at least 10 px on a 1280-pixel page (natural size x displayed scale)
    assert len(seen["font_px"]) >= 6 and "reliability comparison" in {f["alt"] for f in seen["font_px"]}
    assert all(f["px"] >= 10 for f in seen["font_px"]), [f for f in seen["font_px"] if f["px"] < 10]
    # click enlarges a figure to most of the screen, a second click puts it back
    zoom = seen["zoom"]
    assert zoom["opened"] > zoom["before"] and zoom["opened"] >= 0.9 * zoom["viewport"], zoom
    assert zoom["closed"] == pytest.approx(zoom["before"]), zoom
