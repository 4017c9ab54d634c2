"""The HTML reports opened in a real browser: Debian's ``chromium``, headless, driven by ``playwright``.

One tiny run of every preset family (gaussian, categorical, GMM, KDE, VAE, n-gram LM) and a tiny study
are built once for the module; each report is then loaded from a ``file://`` URL at desktop width (1280 px)
and at phone width (390 px). For every page: no console or page error, every ``<img>`` decoded, no request
other than ``file:``/``data:``/``blob:`` (any http(s) one fails the test, and is aborted before it leaves),
a table of contents that links every section by a unique anchor, no sideways scrolling of the page on the
phone, and the print style sheet (no navigation, black on white). Full-page screenshots are kept in
``$MODELCOLLAPSE_ARTIFACTS`` (default ``.ci/artifacts/report-screenshots/``) as CI artifacts.

Without playwright or chromium the browser tests are skipped; with ``MODELCOLLAPSE_EXPECT_BROWSER=1``
(CI sets it) they fail instead. The browser is launched as installed (``executable_path``), never downloaded.
"""

from __future__ import annotations

import copy
import os
import re
from pathlib import Path
from typing import Any

import pytest

from modelcollapse.report.page import document, outline, slug

REPO = Path(__file__).resolve().parent.parent
CHROMIUM = os.environ.get("MODELCOLLAPSE_CHROMIUM", "/usr/bin/chromium")
EXPECT = os.environ.get("MODELCOLLAPSE_EXPECT_BROWSER", "") not in ("", "0")
ARTIFACTS = Path(os.environ.get("MODELCOLLAPSE_ARTIFACTS") or REPO / ".ci" / "artifacts" / "report-screenshots")
#: What this machine's closed network needs: nothing the browser would fetch or phone home for.
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--disable-dev-shm-usage"]  # the last: a container's small /dev/shm does not crash a long screenshot
DESKTOP, PHONE = 1280, 390
LOCAL = ("file:", "data:", "blob:", "about:")

#: page -> (preset, overrides): each takes seconds. Fewer metrics than the presets (a figure each, ~0.3 s);
#: the VAE leaves out the metrics that train a digit classifier (~25 s), the n-gram LM reads gensim's small
#: Lee corpus instead of ~3 MB of Wikipedia (~7 s).
RUNS: dict[str, tuple[str, list[str]]] = {
    "gaussian": ("gaussian", ["replicates=3", "generations=4", "train_size=20", "metrics=[variance_ratio, w2]"]),
    "discrete": ("discrete", ["replicates=3", "generations=4", "metrics=[tv, support_size]"]),
    "gmm": ("gmm", ["replicates=2", "generations=2", "train_size=200", "workers=1",
                    "metrics=[l2_distance, component_weights]"]),
    "kde": ("kde", ["replicates=2", "generations=2", "train_size=100", "heldout_size=100", "metrics=[nll, w2]"]),
    "vae": ("paper-vae", ["replicates=1", "generations=2", "train_size=128", "model.epochs=1", "model.hidden=32",
                          "metric_samples=64", "metrics=[nll, pixel_diversity]"]),
    "ngram": ("lm-ngram", ["replicates=1", "generations=2", "train_size=40", "metric_samples=10", "heldout_size=20",
                           "data.source=lee", "metrics=[perplexity, sample_perplexity, vocab_size]"]),
}
#: page -> anchors it must have (stable: the slug of the heading), besides the ones every run report has
ANCHORS: dict[str, set[str]] = {
    "gaussian": {"densities-at-chosen-generations", "theory-vs-simulation"},
    "discrete": {"categories-over-generations"},
    "gmm": {"densities-at-chosen-generations", "component_weights"},
    "kde": {"densities-at-chosen-generations", "theory"},
    "vae": {"samples-over-generations"},
    "ngram": {"generated-text"},
    "study": {"metrics-over-generations", "heat-map", "sources-of-error", "mitigations", "cells"},
}
RUN_ANCHORS = {"metrics-over-generations", "provenance-of-the-training-data", "files-in-the-run-directory"}
PAGES = [*RUNS, "study"]
#: pages whose print view is kept as a screenshot too
PRINTED = {"gaussian", "study"}


# -- the browser ---------------------------------------------------------------------------------------
def _missing() -> str | None:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright package is not installed (pip install playwright; no `playwright install`)"
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        return f"no chromium at {CHROMIUM} (apt-get install chromium)"
    return None


def _unavailable(reason: str) -> None:
    if EXPECT:
        pytest.fail(f"MODELCOLLAPSE_EXPECT_BROWSER is set, but {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="module")
def browser() -> Any:
    reason = _missing()
    if reason:
        _unavailable(reason)
    from playwright.sync_api import Error, sync_playwright

    with sync_playwright() as p:
        try:
            chromium = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        except Error as exc:
            _unavailable(f"{CHROMIUM} does not start: {str(exc).splitlines()[0]}")
        yield chromium
        chromium.close()


class Watched:
    """A page with a log of its console errors, page errors and every request's URL; http(s) is aborted."""

    def __init__(self, browser: Any, width: int, height: int = 900, **options: Any) -> None:
        self.context = browser.new_context(viewport={"width": width, "height": height}, **options)
        self.context.route(re.compile(r"^(https?|wss?|ftp)://"), lambda route: route.abort())
        self.page = self.context.new_page()
        self.errors: list[str] = []
        self.requests: list[str] = []
        self.page.on("console", lambda m: self.errors.append(f"console.{m.type}: {m.text}")
                     if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(f"page error: {e}"))
        self.page.on("request", lambda r: self.requests.append(r.url))

    def external(self) -> list[str]:
        return [u for u in self.requests if not u.startswith(LOCAL)]

    def reset(self) -> Any:
        """The page, ready for the next report: logs emptied, screen media."""
        self.errors.clear()
        self.requests.clear()
        self.page.emulate_media(media="screen")
        return self.page

    def close(self) -> None:
        self.context.close()


@pytest.fixture(scope="module")
def viewers(browser: Any) -> Any:
    """Width -> a watched page, reused from report to report (a new one costs ~0.4 s)."""
    made: dict[int, Watched] = {}

    def viewer(width: int) -> Watched:
        if width not in made:
            made[width] = Watched(browser, width, is_mobile=width == PHONE, device_scale_factor=1)
        return made[width]

    yield viewer
    for watched in made.values():
        watched.close()


# -- the reports -----------------------------------------------------------------------------------------
def _study() -> dict:
    """The ``mitigations`` preset on the Gaussian and categorical chains, 3 replicates x 3 generations and a
    few of its policies, with a heat map (policy x family) and the two chains read as "sources of error" on
    a metric they share: every section a study report has, in one sweep."""
    from modelcollapse.config import read_source

    raw = copy.deepcopy(read_source("mitigations"))
    raw["name"], raw["description"] = "browser-study", "mitigations, a heat map and <sources> of error"
    raw["cells"] = {f: raw["cells"][f] for f in ("gaussian", "discrete")}
    raw["cells"]["discrete"]["train_size"] = 50  # its Wright-Fisher theory at 200 takes ~15 s
    for cell in raw["cells"].values():
        cell["metrics"] = [*cell["metrics"], "kl"]
    raw["override"] = {"replicates": 3, "generations": 3}
    keep = ("replace", "fresh-0.02", "fresh-0.1", "accumulate", "filter-oracle", "filter-oracle-0.2")
    raw["grid"]["policy"] = {k: v for k, v in raw["grid"]["policy"].items() if k in keep}
    raw["report"]["heatmap"] = {"metric": "kl"}
    raw["errors"] = {"metric": "kl", "sources": {"Gaussian chain": "gaussian", "categorical chain": "discrete"}}
    return raw


@pytest.fixture(scope="module")
def reports(browser: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Page -> its report.html, each built on first use (after the browser fixture: without one, nothing is)."""
    return {"_base": tmp_path_factory.mktemp("reports")}


def report_of(reports: dict[str, Path], name: str) -> Path:
    if name not in reports:
        out = reports["_base"] / name
        if name == "study":
            from modelcollapse.study import build, sweep

            study = build(_study())
            outcome = sweep(study, out, workers=1, progress=False, cell_reports=False)
            assert outcome.ok and len(outcome.completed) == len(study.cells), outcome.failed
            reports[name] = out / "report.html"
        else:
            from modelcollapse.config import load_spec
            from modelcollapse.loop import run
            from modelcollapse.report import write_report

            preset, overrides = RUNS[name]
            run(load_spec(preset, overrides), out, progress=False)
            reports[name] = write_report(out)
    return reports[name]


# -- the checks ---------------------------------------------------------------------------------------
IMAGES = """() => Promise.all(Array.from(document.images, img =>
    img.decode().then(() => [img.alt, img.naturalWidth], () => [img.alt, 0])))"""
OUTLINE = """() => {
  const ids = Array.from(document.querySelectorAll('[id]'), e => e.id);
  const toc = Array.from(document.querySelectorAll('nav.toc a'), a => a.getAttribute('href'));
  const heads = Array.from(document.querySelectorAll('main h2'), h => (h.closest('section[id]') || h).id);
  return {ids, toc, heads, missing: toc.filter(h => !h.startsWith('#') || !document.getElementById(h.slice(1)))};
}"""
#: What pokes out of the viewport on the right, outside a box that scrolls (for the message of a failure)
WIDE = """(w) => Array.from(document.querySelectorAll('main *')).filter(e =>
    e.getBoundingClientRect().right > w + 1 && !e.closest('.scroll')).slice(0, 5)
    .map(e => e.tagName.toLowerCase() + (e.className ? '.' + e.className : '') + ' ' +
         Math.round(e.getBoundingClientRect().width) + 'px')"""
PRINT = """() => {
  const s = e => getComputedStyle(e);
  const toc = document.querySelector('nav.toc');
  return {toc: toc ? s(toc).display : 'none', color: s(document.body).color,
          text: s(document.querySelector('main')).color, background: s(document.body).backgroundColor,
          figures: Array.from(document.querySelectorAll('figure, table'), e => s(e).breakInside)};
}"""


def screenshot(page: Any, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 1000
    return path


@pytest.mark.parametrize("width", [DESKTOP, PHONE], ids=["desktop", "phone"])
@pytest.mark.parametrize("name", PAGES)
def test_report_in_browser(viewers: Any, reports: dict[str, Path], name: str, width: int) -> None:
    path = report_of(reports, name)
    watched = viewers(width)
    page = watched.reset()
    page.goto(path.resolve().as_uri(), wait_until="load")
    decoded = page.evaluate(IMAGES)
    assert decoded, "the report has no image"
    assert all(w > 0 for _, w in decoded), f"images not decoded: {[a for a, w in decoded if not w]}"

    found = page.evaluate(OUTLINE)
    assert len(found["ids"]) == len(set(found["ids"])), f"duplicate ids: {found['ids']}"
    assert not found["missing"], f"table-of-contents links to nothing: {found['missing']}"
    assert found["toc"] == [f"#{i}" for i in found["heads"]], "the contents are not the page's sections"
    expected = ANCHORS[name] | (RUN_ANCHORS if name in RUNS else set())
    assert expected <= set(found["heads"]), f"missing anchors {expected - set(found['heads'])}: {found['heads']}"

    page.click(f"nav.toc a[href='{found['toc'][-1]}']")  # a link of the contents jumps to its section
    assert page.evaluate("location.hash") == found["toc"][-1]
    top = page.evaluate(f"document.getElementById({found['heads'][-1]!r}).getBoundingClientRect().top")
    assert -2 <= top < page.viewport_size["height"]
    page.evaluate("window.scrollTo(0, 0)")
    page.mouse.move(0, 0)  # no link left hovered in the screenshots

    screenshot(page, f"{name}-{'desktop' if width == DESKTOP else 'phone'}")
    if width == PHONE:
        scroll = page.evaluate("document.documentElement.scrollWidth")
        assert scroll <= width + 1, f"the page scrolls sideways ({scroll} px): {page.evaluate(WIDE, width)}"
    else:
        page.emulate_media(media="print")
        printed = page.evaluate(PRINT)
        assert printed["toc"] == "none", "the contents are printed"
        assert printed["color"] == printed["text"] == "rgb(0, 0, 0)", printed
        assert printed["background"] == "rgb(255, 255, 255)", printed
        assert set(printed["figures"]) == {"avoid"}, printed["figures"]
        if name in PRINTED:
            screenshot(page, f"{name}-print")
    assert not watched.errors, watched.errors
    assert not watched.external(), f"requests outside the file: {watched.external()}"
    assert watched.requests and watched.requests[0] == path.resolve().as_uri()


def test_the_checks_catch_a_bad_page(browser: Any, tmp_path: Path) -> None:
    """The checks above would see a report that fetched anything, logged an error, had a broken image or
    was too wide for a phone: a page that does all of it."""
    page_file = tmp_path / "bad.html"
    page_file.write_text("<!DOCTYPE html><html><head><meta name='viewport' content='width=device-width'>"
                         "<link rel='stylesheet' href='https://example.invalid/a.css'></head><body><main>"
                         "<img src='http://example.invalid/x.png' alt='x'><div style='width:900px'>wide</div>"
                         "<script>console.error('boom')</script></main></body></html>")
    watched = Watched(browser, PHONE, is_mobile=True)
    try:
        watched.page.goto(page_file.as_uri(), wait_until="load")
        assert {"https://example.invalid/a.css", "http://example.invalid/x.png"} <= set(watched.external())
        assert any("boom" in e for e in watched.errors)
        assert watched.page.evaluate(IMAGES) == [["x", 0]]
        assert watched.page.evaluate("document.documentElement.scrollWidth") > PHONE + 1
        assert "div 900px" in watched.page.evaluate(WIDE, PHONE)
    finally:
        watched.close()


# -- the outline, without a browser -------------------------------------------------------------------------
def test_slugs_are_stable_and_plain() -> None:
    assert slug("Metrics over generations") == "metrics-over-generations"
    assert slug("Stopped replicates (12)") == slug("Stopped replicates (3)") == "stopped-replicates"
    assert slug("Fréchet &amp; <code>w2</code>") == "frechet-w2"
    assert slug("component_weights") == "component_weights" and slug("¿?") == "section"


def test_every_heading_gets_a_unique_anchor_and_a_line_in_the_contents() -> None:
    parts = ["<h1>run</h1><p>about</p>", "<h2>Metrics</h2>", "<figure>f</figure>",
             "<h2 id='mitigations'>Mitigations</h2><p>m</p>", "<h2>Metrics</h2><p>again</p><h2>Inner &amp; co</h2>",
             "<p>tail</p>"]
    blocks, entries = outline(parts)
    assert entries == [("metrics", "Metrics"), ("mitigations", "Mitigations"), ("metrics-2", "Metrics"),
                       ("inner-co", "Inner &amp; co")]
    body = "".join(blocks)
    assert body.count("<section") == body.count("</section>") == 3
    assert "<section id='metrics'>" in body and "<h2>Metrics</h2>" in body  # the heading itself is unchanged
    assert "<h2 id='inner-co'>Inner &amp; co</h2>" in body and body.count("id='mitigations'") == 1
    page = document("t", parts)
    toc = re.search(r"<nav class='toc'.*?</nav>", page).group(0)
    assert re.findall(r"href='#([^']*)'", toc) == ["metrics", "mitigations", "metrics-2", "inner-co"]
    assert page.index("about") < page.index("<nav") < page.index("<section")
    assert "<nav" not in document("t", ["<h1>x</h1>", "<h2>Only</h2>"])  # one section needs no contents
