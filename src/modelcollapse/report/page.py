"""The page a report is written on, and the writer that runs the sections in order."""

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
    """Rows of already-escaped cells."""
    th = "<tr>" + "".join(f"<th>{h}</th>" for h in head) + "</tr>" if head else ""
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table>{th}{body}</table>"


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
main{max-width:1000px;margin:0 auto;padding:20px 32px 48px;background:#fff;min-height:100vh}
h1{font-size:1.8em;margin:.3em 0 .1em}.desc{color:#444;margin:.2em 0 1em}
h2{font-size:1.25em;border-bottom:1px solid #dde2e7;padding-bottom:.2em;margin-top:2em}
table{border-collapse:collapse;font-size:.88em;margin:.6em 0}
th,td{text-align:left;padding:3px 12px 3px 0;border-bottom:1px solid #eceff2;vertical-align:top}
th{color:#555;font-weight:600}td:first-child{color:#555;white-space:nowrap}
figure{margin:1.4em 0}img{max-width:100%;height:auto;display:block}
figcaption{font-size:.85em;color:#444;margin-top:.3em}
ol.texts{font:13px/1.45 ui-monospace,Menlo,Consolas,monospace;color:#333}h3{font-size:1em;margin:1em 0 .2em}
details{font-size:.9em;color:#555}summary{cursor:pointer}code{font-size:.9em;word-break:break-word}
.banner{padding:10px 14px;border-left:6px solid;border-radius:3px;margin:1em 0}
.status{display:inline-block;padding:1px 10px;border-radius:3px;font-weight:700;color:#fff;
 text-transform:uppercase;font-size:.85em;margin-right:.5em}
.banner.completed{border-color:#2e7d32;background:#edf7ee}.status.completed{background:#2e7d32}
.banner.running{border-color:#1565c0;background:#e8f1fb}.status.running{background:#1565c0}
.banner.interrupted{border-color:#ef6c00;background:#fff4e5}.status.interrupted{background:#ef6c00}
.banner.failed{border-color:#c62828;background:#fdecea}.status.failed{background:#c62828}
.banner.unknown{border-color:#616161;background:#f2f2f2}.status.unknown{background:#616161}
"""




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
    body = "\n".join(page.parts)
    doc = (f"<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
           f"<meta name='viewport' content='width=device-width, initial-scale=1'>"
           f"<title>{esc(run.spec.name)}: model collapse report</title><style>{CSS}</style></head>"
           f"<body><main>\n{body}\n</main></body></html>\n")
    RunStore(path).write_text("report.html", doc)
    log(f"wrote {path / 'report.html'}")
    return path / "report.html"
