"""The page a report is written on, and the writer that runs the sections in order.

:func:`document` turns the blocks the sections added into the HTML file: every ``<h2>`` starts a
``<section>`` with a stable anchor (the slug of its heading), a table of contents links them, and the
style sheet keeps the page readable on a phone (tables scroll in their own box, images shrink) and in
print (no navigation, black on white, no page break inside a figure or a table).
"""

from __future__ import annotations

import base64
import html
import json
import os
import re
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from ..store import RunStore, atomic_write
from . import figures
from .run import Run, load_run
from .section import Section

# -- formatting -----------------------------------------------------------------------------
esc = html.escape


def num(v: float) -> str:
    return "–" if v is None or np.isnan(v) else ("inf" if np.isposinf(v) else f"{v:.3g}")


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    m, s = divmod(float(seconds), 60)
    h, m = divmod(int(m), 60)
    return f"{h} h {m} min" if h else (f"{m} min {s:.0f} s" if m else f"{s:.1f} s")


def size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return ""


def safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)


def table(rows: list[tuple[str, str]], head: tuple[str, ...] = ()) -> str:
    """Rows of already-escaped cells, in a box that scrolls sideways when the table is wider than the screen."""
    th = "<tr>" + "".join(f"<th>{h}</th>" for h in head) + "</tr>" if head else ""
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<div class='scroll'><table>{th}{body}</table></div>"


class Page:
    """Collects HTML blocks and figures; each figure is saved once and embedded from the same bytes."""

    esc = staticmethod(html.escape)

    def __init__(self, figdir: Path, log: Callable[[str], None]) -> None:
        self.figdir, self.log = figdir, log
        self.parts: list[str] = []
        self.written: list[str] = []

    def add(self, block: str) -> None:
        self.parts.append(block)

    def figure(self, name: str, fig: Figure, caption: str) -> None:
        data = figures.png(fig)
        self.figdir.mkdir(parents=True, exist_ok=True)
        atomic_write(self.figdir / f"{name}.png", data)
        self.written.append(f"{name}.png")
        uri = "data:image/png;base64," + base64.b64encode(data).decode()
        self.add(f'<figure><img src="{uri}" alt="{esc(name)}"><figcaption>{caption}</figcaption></figure>')
        self.log(f"figures/{name}.png")


CSS = """
body{margin:0;background:#eef1f4;color:#1d2329;
 font:15px/1.5 -apple-system,BlinkMacSystemFont,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif}
main{max-width:1000px;margin:0 auto;padding:20px 32px 48px;background:#fff;min-height:100vh;box-sizing:border-box}
h1{font-size:1.8em;margin:.3em 0 .1em;overflow-wrap:anywhere}.desc{color:#444;margin:.2em 0 1em}
h2{font-size:1.25em;border-bottom:1px solid #dde2e7;padding-bottom:.2em;margin-top:2em;overflow-wrap:anywhere}
section{position:relative}
a.anchor{position:absolute;left:-15px;top:0;width:13px;text-align:center;font:600 15px/28px sans-serif;
 color:#8a96a3;text-decoration:none;opacity:0}
section:hover>a.anchor,a.anchor:focus{opacity:1}
@media (hover:none){a.anchor{opacity:.6}}
nav.toc{margin:1.4em 0 0;padding:.5em 1em .6em;background:#f6f8fa;border:1px solid #e1e6eb;border-radius:4px;
 font-size:.9em}
nav.toc .toc-title{font-weight:600;color:#555}
nav.toc ol{margin:.2em 0 0;padding-left:1.6em;columns:2 18em;column-gap:2.5em}
nav.toc li{break-inside:avoid;padding:1px 0}
nav.toc a{color:#1f5f99;text-decoration:none}nav.toc a:hover{text-decoration:underline}
.scroll{max-width:100%;overflow-x:auto}
table{border-collapse:collapse;font-size:.88em;margin:.6em 0}
th,td{text-align:left;padding:3px 12px 3px 0;border-bottom:1px solid #eceff2;vertical-align:top}
th{color:#555;font-weight:600}td:first-child{color:#555;white-space:nowrap}
figure{margin:1.4em 0}img{max-width:100%;height:auto;display:block}
figcaption{font-size:.85em;color:#444;margin-top:.3em;overflow-wrap:break-word}
ol.texts{font:13px/1.45 ui-monospace,Menlo,Consolas,monospace;color:#333;overflow-wrap:anywhere}
h3{font-size:1em;margin:1em 0 .2em}
details{font-size:.9em;color:#555}summary{cursor:pointer}code{font-size:.9em;word-break:break-word}
.banner{padding:10px 14px;border-left:6px solid;border-radius:3px;margin:1em 0;overflow-wrap:break-word}
.status{display:inline-block;padding:1px 10px;border-radius:3px;font-weight:700;color:#fff;
 text-transform:uppercase;font-size:.85em;margin-right:.5em}
.banner.completed{border-color:#2e7d32;background:#edf7ee}.status.completed{background:#2e7d32}
.banner.running{border-color:#1565c0;background:#e8f1fb}.status.running{background:#1565c0}
.banner.interrupted{border-color:#ef6c00;background:#fff4e5}.status.interrupted{background:#ef6c00}
.banner.failed{border-color:#c62828;background:#fdecea}.status.failed{background:#c62828}
.banner.unknown{border-color:#616161;background:#f2f2f2}.status.unknown{background:#616161}
@media (max-width:640px){
 body{font-size:14px}main{padding:12px 16px 32px;min-height:0}h1{font-size:1.5em}
 .banner{padding:8px 10px}nav.toc{padding:.5em .8em}nav.toc ol{padding-left:1.3em}
 th,td{padding-right:8px}
}
@media print{
 *{color:#000!important;background:transparent!important;box-shadow:none!important}
 html,body,main{background:#fff!important}
 body{font-size:11pt}main{max-width:none;margin:0;padding:0;min-height:0}
 nav.toc,a.anchor{display:none!important}
 a{text-decoration:none}
 .scroll{overflow:visible}
 figure,table,tr,img,.banner,nav,details{break-inside:avoid;page-break-inside:avoid}
 h1,h2,h3{break-after:avoid;page-break-after:avoid}
 .banner,.banner.completed,.banner.running,.banner.interrupted,.banner.failed,.banner.unknown{border-color:#000}
 .status{border:1px solid #000;color:#000!important}
 th,td{border-bottom-color:#999}
}
"""


# -- the document: sections, their anchors and the table of contents ------------------------------
#: A level-2 heading: what starts a section of the page.
H2 = re.compile(r"<h2\b([^>]*)>(.*?)</h2\s*>", re.S | re.I)
ID = re.compile(r"""\bid\s*=\s*(?:"([^"]*)"|'([^']*)')""", re.I)
#: The table of contents' own id, never a section's.
TOC_ID = "contents"


def heading_text(inner: str) -> str:
    """A heading's text: its tags dropped, entities kept escaped, whitespace collapsed."""
    return " ".join(re.sub(r"<[^>]+>", " ", inner).split())


def slug(text: str) -> str:
    """The anchor of a heading: lower-case ASCII letters, digits and ``_``, other runs as ``-``. A trailing
    count ("Stopped replicates (12)") is left out, so the anchor of a section does not move with its numbers."""
    import unicodedata

    text = html.unescape(heading_text(text))
    text = re.sub(r"\s*\(\d+\)$", "", text)
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9_]+", "-", text.lower()).strip("-") or "section"


def outline(parts: list[str]) -> tuple[list[str], list[tuple[str, str]]]:
    """Each block that opens with an ``<h2>`` starts a ``<section>`` (up to the next one) with an id, the slug
    of its heading (unique on the page; a heading's own id is kept), and a link to itself. A heading further
    inside a block gets the id on itself. Returns the blocks so wrapped and the (id, heading text) of every
    section in page order, for the table of contents."""
    taken = {TOC_ID} | {a or b for part in parts for a, b in ID.findall(part)}
    entries: list[tuple[str, str]] = []

    def name(attrs: str, inner: str) -> tuple[str, bool]:
        """The heading's id, and whether it already has it."""
        found = ID.search(attrs)
        if found:
            return found.group(1) or found.group(2), True
        base = candidate = slug(inner)
        k = 2
        while candidate in taken:
            candidate, k = f"{base}-{k}", k + 1
        taken.add(candidate)
        return candidate, False

    out: list[str] = []
    open_section = False
    for part in parts:
        lead = len(part) - len(part.lstrip())
        pieces, pos = [], 0
        for m in H2.finditer(part):
            ident, own = name(m.group(1), m.group(2))
            entries.append((ident, heading_text(m.group(2))))
            link = f"<a class='anchor' href='#{esc(ident)}' aria-label='link to this section'>#</a>"
            if m.start() == lead:  # the block opens with it: a section of its own
                pieces.append(part[pos:m.start()] + ("</section>\n" if open_section else "")
                              + (f"<section>{link}" if own else f"<section id='{esc(ident)}'>{link}") + m.group(0))
                open_section = True
            else:
                pieces.append(part[pos:m.start()] + (m.group(0) if own else
                                                     f"<h2 id='{esc(ident)}'{m.group(1)}>{m.group(2)}</h2>"))
            pos = m.end()
        out.append("".join(pieces) + part[pos:])
    if open_section:
        out.append("</section>")
    return out, entries


def toc(entries: list[tuple[str, str]]) -> str:
    """The table of contents: a link to every section, in page order (none for fewer than two)."""
    if len(entries) < 2:
        return ""
    items = "".join(f"<li><a href='#{esc(ident)}'>{text}</a></li>" for ident, text in entries)
    return (f"<nav class='toc' id='{TOC_ID}' aria-label='Contents'><div class='toc-title'>Contents</div>"
            f"<ol>{items}</ol></nav>")


def document(title: str, parts: list[str]) -> str:
    """The whole self-contained page: the blocks in sections, the table of contents before the first one."""
    blocks, entries = outline(parts)
    first = next((i for i, b in enumerate(blocks) if "<section" in b or H2.search(b)), len(blocks))
    blocks.insert(first, toc(entries))
    body = "\n".join(b for b in blocks if b)
    return (f"<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
            f"<meta name='viewport' content='width=device-width, initial-scale=1'>"
            f"<title>{esc(title)}</title><style>{CSS}</style></head>"
            f"<body><main>\n{body}\n</main></body></html>\n")


#: In figures/: the names of the figures the last report wrote (other files there are left alone).
INDEX = ".report-figures.json"
#: Figure names of reports written before the index existed (version 0.1).
LEGACY = re.compile(r"^(metric_.+|vector_.+|density|categorical_rare|categorical_heatmap|provenance|samples|class_mix"
                    r"|zipf|sample_perplexity_hist)\.png$")


def _remove_stale(page: Page) -> None:
    """Delete figures an earlier report wrote that this one no longer makes, and record what it wrote."""
    if not page.figdir.is_dir():
        return
    index = page.figdir / INDEX
    try:
        before = set(json.loads(index.read_text()))
    except (OSError, ValueError):
        before = {p.name for p in page.figdir.glob("*.png") if LEGACY.match(p.name)}
    for name in sorted(before - set(page.written)):
        (page.figdir / Path(name).name).unlink(missing_ok=True)
    atomic_write(index, json.dumps(sorted(page.written)).encode())


def sections(run: Run) -> list[Section]:
    """The core sections, the data kind's and the family's, in page order."""
    from .sections import CORE

    own = [*getattr(type(run.spec.data), "report_sections", ()), *getattr(run.family.cls, "report_sections", ())]
    return sorted([*CORE, *own], key=lambda s: s.order)


def write_report(run_dir: str | Path, *, progress: bool = False) -> Path:
    """Write ``figures/*.png`` and a self-contained ``report.html`` into ``run_dir``; return the HTML path."""
    path = Path(run_dir)
    log = (lambda msg: print(f"report: {msg}", file=sys.stderr)) if progress else (lambda msg: None)
    run = load_run(path)
    log(f"read {run.generations} generations × {run.spec.replicates} replicates")
    page = Page(path / "figures", log)
    with figures.style():
        for section in sections(run):
            section.draw(run, page)
    _remove_stale(page)
    doc = document(f"{run.spec.name}: model collapse report", page.parts)
    RunStore(path).write_text("report.html", doc)
    log(f"wrote {path / 'report.html'}")
    return path / "report.html"
