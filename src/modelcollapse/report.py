"""A self-contained HTML report of one run directory (figures in ``figures.py``).

The report only *reads* the run directory (see ``store.py`` for its layout): it never
re-runs or re-fits anything, so it works on a run that is still going, was interrupted
or failed, and shows whatever has been recorded. Figures are written as PNG files to
``DIR/figures/`` and embedded in ``DIR/report.html`` as data URIs, so the HTML file can
be mailed or archived on its own.
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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from matplotlib.figure import Figure

from . import figures, metrics, theory
from .config import ExperimentSpec, validate
from .data import DATA_TYPES, build_truth
from .registry import UnknownNameError
from .report_images import image_section
from .report_text import text_section
from .store import RunStore

RESERVED = ("replicate", "generation", "stopped")  # metric rows' keys that are not metrics
MAX_CATEGORICAL_GENERATIONS = 200  # parameter files read for the categorical figures
RARE = 10  # rarest original categories followed over generations
OWN_FIGURES = re.compile(
    r"^(metric_.+|vector_.+|density|categorical_rare|categorical_heatmap|provenance|samples|class_mix|zipf"
    r"|sample_perplexity_hist)\.png$"
)


@dataclass
class Run:
    """Everything the report shows, read once from the run directory."""

    path: Path
    spec: ExperimentSpec
    manifest: dict
    scalars: dict[str, np.ndarray] = field(default_factory=dict)  # name -> (generation, replicate)
    vectors: dict[str, np.ndarray] = field(default_factory=dict)  # name -> (generation, replicate, k)
    stopped: dict[int, tuple[int | None, str]] = field(default_factory=dict)  # replicate -> (generation, why)
    provenance: list[dict] = field(default_factory=list)
    saved: list[int] = field(default_factory=list)  # generations with a parameters file

    @property
    def generations(self) -> int:
        """How many generations have metric rows (0 .. generations - 1)."""
        return max([len(v) for v in (*self.scalars.values(), *self.vectors.values())], default=0)


# -- reading -----------------------------------------------------------------------------
def read_jsonl(path: Path) -> list[dict]:
    """Rows of a JSONL file, parsed in one call (fast for 200k rows); a partly written last
    line (a crash in the middle of an append) is skipped rather than fatal."""
    if not path.exists():
        return []
    lines = [ln for ln in path.read_text().splitlines() if ln.strip()]
    try:
        return json.loads("[" + ",".join(lines) + "]")
    except json.JSONDecodeError:
        return [row for row in map(_loads, lines) if row is not None]


def _loads(line: str) -> dict | None:
    try:
        return json.loads(line)
    except json.JSONDecodeError:
        return None


def _metric_arrays(run: Run, rows: list[dict]) -> None:
    """Fill ``run.scalars``/``run.vectors`` with (generation, replicate[, k]) arrays, NaN where missing."""
    rows = [r for r in rows if isinstance(r.get("generation"), int) and isinstance(r.get("replicate"), int)]
    if not rows:
        return
    gen = np.fromiter((r["generation"] for r in rows), dtype=np.int64, count=len(rows))
    rep = np.fromiter((r["replicate"] for r in rows), dtype=np.int64, count=len(rows))
    shape = (int(gen.max()) + 1, max(run.spec.replicates, int(rep.max()) + 1))
    extra = [k for k in rows[0] if k not in RESERVED and k not in run.spec.metrics]
    for name in [*run.spec.metrics, *extra]:
        column = [r.get(name) for r in rows]
        first = next((v for v in column if v is not None), None)
        if first is None:
            continue
        if isinstance(first, list):  # a vector metric; JSON null stands for NaN inside it too
            blank = [None] * len(first)
            arr = np.full(shape + (len(first),), np.nan)
            arr[gen, rep] = np.array([v if v is not None else blank for v in column], dtype=float)
            run.vectors[name] = arr
        else:
            arr = np.full(shape, np.nan)
            arr[gen, rep] = np.array(column, dtype=float)
            run.scalars[name] = arr
    for r in rows:
        if "stopped" in r and r["replicate"] not in run.stopped:
            run.stopped[r["replicate"]] = (r["generation"], str(r["stopped"]))


def load_run(path: Path) -> Run:
    store = RunStore.open(path)
    spec = validate(yaml.safe_load(store.config_text()))
    try:
        manifest = store.manifest()
    except (OSError, json.JSONDecodeError):
        manifest = {"status": "unknown"}
    run = Run(path, spec, manifest)
    _metric_arrays(run, read_jsonl(path / "metrics.jsonl"))
    for r, why in (manifest.get("stopped") or {}).items():
        run.stopped.setdefault(int(r), (None, str(why)))
    run.provenance = read_jsonl(path / "provenance.jsonl") or manifest.get("provenance", [])
    run.saved = store.generations()
    return run


def model_states(run: Run, g: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Generation g's fitted parameters (leading replicate axis) and stopped flags; only these
    are read (accumulating runs also store whole synthetic sets)."""
    store = RunStore(run.path)
    state = store.model_state(g)
    flags = store.read_tensors(store.generation_file(g), "stopped")
    return state, flags.get("stopped", np.zeros(run.spec.replicates, bool))


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


def _atomic_write(path: Path, data: bytes) -> None:
    """Write by rename so a reader never sees half a PNG."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.replace(tmp, path)


class Page:
    """Collects HTML blocks and figures; each figure is saved once and embedded from the same bytes."""

    def __init__(self, figdir: Path, log: Callable[[str], None]) -> None:
        self.figdir, self.log = figdir, log
        self.parts: list[str] = []
        self.written: list[str] = []

    def add(self, block: str) -> None:
        self.parts.append(block)

    def figure(self, name: str, fig: Figure, caption: str) -> None:
        data = figures.png(fig)
        self.figdir.mkdir(parents=True, exist_ok=True)
        _atomic_write(self.figdir / f"{name}.png", data)
        self.written.append(f"{name}.png")
        uri = "data:image/png;base64," + base64.b64encode(data).decode()
        self.add(f'<figure><img src="{uri}" alt="{esc(name)}"><figcaption>{caption}</figcaption></figure>')
        self.log(f"figures/{name}.png")


# -- sections -----------------------------------------------------------------------------------
STATUS_TEXT = {
    "completed": "The run completed.",
    "running": "The run is still running (or was killed before it could record otherwise): "
               "this report is a snapshot of what was recorded so far.",
    "interrupted": "The run was interrupted: this report shows the generations recorded before that.",
    "failed": "The run failed: this report shows the generations recorded before the error.",
}


def _spec_cell(part: Any) -> str:
    fields = part.model_dump(mode="json")
    rest = ", ".join(f"{k}={json.dumps(v)}" for k, v in fields.items() if k != "kind")
    text = f"{fields['kind']}" + (f" ({rest})" if rest else "")
    return esc(text if len(text) < 160 else text[:157] + "…")


def header(run: Run, page: Page) -> None:
    spec, man = run.spec, run.manifest
    status = str(man.get("status", "unknown"))
    klass = status if status in STATUS_TEXT else "unknown"
    note = STATUS_TEXT.get(status, "The run's status is unknown.")
    if man.get("error"):
        note += f"<br><b>Error:</b> <code>{esc(str(man['error']))}</code>"
    if man.get("stopped_early"):
        note += f"<br>Stopped early: {esc(str(man['stopped_early']))}"
    shown = f"0–{run.generations - 1}" if run.generations else "none yet"
    policy = spec.policy.kind
    if spec.policy.kind in ("mix", "fresh"):
        policy += f" (real_fraction={spec.policy.real_fraction})"
    facts = [
        ("generations with metrics", f"{esc(shown)} (planned: 0–{spec.generations})"),
        ("last checkpoint", esc(str(man.get("generations_completed", "–")))),
        ("replicates", f"{spec.replicates} ({len(run.stopped)} stopped)" if run.stopped else str(spec.replicates)),
        ("elapsed", esc(duration(man.get("elapsed_seconds")))),
        ("started / finished", esc(f"{man.get('started') or '–'} / {man.get('finished') or '–'}")),
        ("data", _spec_cell(spec.data)), ("model", _spec_cell(spec.model)), ("policy", esc(policy)),
        ("train size / held-out size", f"{spec.train_size} / {spec.heldout_size}"),
        ("seed", str(spec.seed)), ("metrics", esc(", ".join(spec.metrics))),
    ]
    versions = [(esc(k), esc(str(v))) for k, v in (man.get("versions") or {}).items()]
    page.add(
        f"<h1>{esc(spec.name)}</h1><p class='desc'>{esc(spec.description)}</p>"
        f"<div class='banner {klass}'><span class='status {klass}'>{esc(status)}</span> {note}</div>"
        f"{table(facts)}<details><summary>versions</summary>{table(versions)}</details>"
    )


def _description(run: Run, name: str) -> str:
    try:
        return metrics.resolve(name, run.spec.model.kind, run.spec.data.kind).description
    except UnknownNameError:  # a metric this version no longer knows: still plot it
        return ""


def _summary(values: np.ndarray, g: int) -> str:
    """Median [5%, 95%] at generation g; missing values (null: stopped replicates) are counted,
    infinite ones (stored as 1e999, read back as inf) enter the percentiles."""
    lo, med, hi = figures.quantiles(values[g : g + 1])[:, 0]
    missing = int(np.isnan(values[g]).sum())
    return f"{num(med)} [{num(lo)}, {num(hi)}]" + (f" ({missing} of {values.shape[1]} missing)" if missing else "")


def metric_section(run: Run, page: Page) -> None:
    page.add("<h2>Metrics over generations</h2>")
    empty = [m for m in run.spec.metrics if m not in run.scalars and m not in run.vectors]
    if empty:
        page.add(f"<p>No values recorded (yet) for: {esc(', '.join(empty))}.</p>")
    last = run.generations - 1
    for name, values in run.scalars.items():
        description = _description(run, name)
        expected = theory.expected(run.spec, name)
        fig = figures.metric_curve(values, name, description, expected, run.spec.report.replicates_shown)
        caption = (f"<b>{esc(name)}</b>: {esc(description)}. Median [5%, 95%] over replicates at generation 0: "
                   f"{_summary(values, 0)}; at generation {last}: {_summary(values, last)}.")
        if expected is not None:
            caption += f" Dashed: closed-form E[{esc(name)}] (see theory.py); dotted: the replicates' mean."
        page.figure(f"metric_{safe_name(name)}", fig, caption)


def density_generations(run: Run) -> list[int]:
    """The spec's chosen generations that have a parameters file, always with the first and last."""
    if not run.saved:
        return []
    wanted = set(run.spec.report.density_generations) | {run.saved[0], run.saved[-1]}
    return sorted(wanted & set(run.saved))


def density_section(run: Run, page: Page) -> None:
    gens = density_generations(run)
    if not gens or DATA_TYPES[run.spec.data.kind] != "continuous":
        return
    truth = build_truth(run.spec.data).as_mixture()
    d = truth[1].shape[1]
    axes = [0] if d == 1 else [0, 1]
    shown = run.spec.report.replicates_shown
    fits: dict[int, list[figures.Mixture | None]] = {}
    for g in gens:
        state, stopped = model_states(run, g)
        fits[g] = [None if stopped[r] else figures.fitted_mixture(run.spec.model.kind, state, r)
                   for r in range(min(shown, run.spec.replicates))]
        fits[g] = [None if m is None else figures.marginal(m, axes) for m in fits[g]]
    truth = figures.marginal(truth, axes)
    flat = [m for ms in fits.values() for m in ms if m is not None]
    spans = tuple(figures.span(truth, flat, j) for j in range(len(axes)))
    page.add("<h2>Densities at chosen generations</h2>")
    note = "" if d <= 2 else f" Data have {d} dimensions: the first two coordinates' marginal is shown."
    listed = ", ".join(map(str, gens))
    if len(axes) == 1:
        fig = figures.density_1d(truth, fits, spans[0])
        faint = f" (bold; replicates 1–{len(fits[gens[0]]) - 1} faint)" if len(fits[gens[0]]) > 1 else ""
        caption = (f"The original density (black, grey fill) and replicate 0's fitted density{faint} at "
                   f"generations {listed}. A dashed vertical line marks a zero-variance fit (a point mass).")
    else:
        fig = figures.density_2d(truth, fits, spans)
        caption = (f"Generations {listed}: contours of the original density (grey) and of replicate 0's fit "
                   "(colour) at the same levels (5, 20, 50, 80% of the original's peak) in every panel; "
                   "× marks a component too narrow to contour.")
    page.figure("density", fig, esc(caption) + esc(note))


def categorical_section(run: Run, page: Page) -> None:
    if DATA_TYPES[run.spec.data.kind] != "discrete" or not run.saved:
        return
    q = build_truth(run.spec.data).probs_
    # Read every generation up to a limit, else half evenly spaced and half geometrically
    # (categorical chains change fastest early, and the figures stretch the early generations).
    n, half = len(run.saved), MAX_CATEGORICAL_GENERATIONS // 2
    pick = np.arange(n) if n <= 2 * half else np.unique(np.r_[
        np.round(np.geomspace(1, n, half)).astype(int) - 1, np.linspace(0, n - 1, half).round().astype(int)])
    gens = np.array(run.saved)[pick]
    probs = np.full((len(gens), run.spec.replicates, len(q)), np.nan)
    for i, g in enumerate(gens):
        state, stopped = model_states(run, int(g))
        if "probs" in state:
            probs[i] = np.where(stopped[:, None], np.nan, state["probs"])
    rare = np.argsort(q, kind="stable")[: min(RARE, len(q))]
    page.add("<h2>Categories over generations</h2>")
    thinned = f" ({len(gens)} of {n} generations, denser early)" if len(gens) < n else ""
    page.figure("categorical_rare", figures.rare_categories(gens, probs, q, rare), esc(
        f"The {len(rare)} least likely original categories{thinned}: their median fitted probability over "
        "replicates, replicate 0's, and the share of replicates in which each is still possible. "
        "Rare categories are lost first and, without smoothing, never come back."))
    page.figure("categorical_heatmap", figures.category_heatmap(gens, probs[:, 0], q), esc(
        f"Replicate 0's fitted probabilities{thinned}, one row per category, the original's most likely on "
        "top. White cells are categories that have vanished; a single dark row at the end is absorption."))


def vector_section(run: Run, page: Page) -> None:
    for name, values in run.vectors.items():
        if name == "class_histogram":  # drawn as the class mix (report_images.py)
            continue
        description = _description(run, name)
        page.add(f"<h2>{esc(name)}</h2>")
        page.figure(f"vector_{safe_name(name)}", figures.component_weights(values), esc(
            f"{description}. Median over replicates with the 5–95% band, component by size rank."))


def provenance_shares(lines: list[dict]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Per generation, the mean share of the training set that is real, drawn from the previous
    generation's model, or from older ones (accumulating policies)."""
    lines = sorted((ln for ln in lines if ln.get("size")), key=lambda ln: ln["generation"])
    gens = np.array([ln["generation"] for ln in lines], dtype=int)
    shares = {"real data": [], "previous generation": [], "older generations": []}
    for ln in lines:
        sources = ln.get("sources") or {"real": ln.get("real", 0), str(ln["generation"] - 1): ln.get("synthetic", 0)}
        real = float(sources.get("real", 0))
        last = float(sources.get(str(ln["generation"] - 1), 0))
        total = float(ln["size"])
        shares["real data"].append(real / total)
        shares["previous generation"].append(last / total)
        shares["older generations"].append(max(0.0, 1 - (real + last) / total))
    return gens, {k: np.array(v) for k, v in shares.items() if np.any(np.array(v) > 1e-9)}


def provenance_section(run: Run, page: Page) -> None:
    gens, shares = provenance_shares(run.provenance)
    if not len(gens):
        return
    sizes = {ln["generation"]: ln["size"] for ln in run.provenance if ln.get("size")}
    page.add("<h2>Provenance of the training data</h2>")
    page.figure("provenance", figures.provenance(gens, shares), esc(
        f"Policy {run.spec.policy.kind}. Training-set size {sizes[gens[0]]} at generation {gens[0]}, "
        f"{sizes[gens[-1]]} at generation {gens[-1]}."))


def stopped_section(run: Run, page: Page, limit: int = 50) -> None:
    if not run.stopped:
        return
    rows = [(str(r), "–" if g is None else str(g), esc(why)) for r, (g, why) in sorted(run.stopped.items())]
    more = f"<p>… and {len(rows) - limit} more.</p>" if len(rows) > limit else ""
    page.add(f"<h2>Stopped replicates ({len(rows)})</h2>"
             + table(rows[:limit], ("replicate", "stopped at generation", "reason")) + more)


def files_section(run: Run, page: Page) -> None:
    rows = []
    for p in sorted(run.path.iterdir()):
        if p.name.startswith("."):
            continue
        if p.is_dir():
            inside = sorted(f for f in p.iterdir() if f.is_file() and not f.name.startswith("."))
            span = f": {inside[0].name} … {inside[-1].name}" if len(inside) > 1 else ""
            total = size(sum(f.stat().st_size for f in inside))
            rows.append((esc(p.name + "/"), esc(f"{len(inside)} files, {total}{span}")))
        else:
            rows.append((esc(p.name), esc(size(p.stat().st_size))))
    if not (run.path / "report.html").exists():
        rows.append(("report.html", "this page"))
    page.add("<h2>Files in the run directory</h2>" + table(rows))


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


def write_report(run_dir: str | Path, *, progress: bool = False) -> Path:
    """Write ``figures/*.png`` and a self-contained ``report.html`` into ``run_dir``; return the HTML path."""
    path = Path(run_dir)
    log = (lambda msg: print(f"report: {msg}", file=sys.stderr)) if progress else (lambda msg: None)
    run = load_run(path)
    log(f"read {run.generations} generations × {run.spec.replicates} replicates")
    page = Page(path / "figures", log)
    with figures.style():
        for section in (header, image_section, text_section, metric_section, density_section,
                        categorical_section, vector_section, provenance_section, stopped_section, files_section):
            section(run, page)
    # Figures of an earlier report that this one no longer makes would be stale: remove them.
    if page.figdir.is_dir():
        for old in page.figdir.iterdir():
            if OWN_FIGURES.match(old.name) and old.name not in page.written:
                old.unlink()
    body = "\n".join(page.parts)
    doc = (f"<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
           f"<meta name='viewport' content='width=device-width, initial-scale=1'>"
           f"<title>{esc(run.spec.name)}: model collapse report</title><style>{CSS}</style></head>"
           f"<body><main>\n{body}\n</main></body></html>\n")
    RunStore(path).write_text("report.html", doc)
    log(f"wrote {path / 'report.html'}")
    return path / "report.html"
