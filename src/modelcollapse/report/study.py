"""The HTML report of a study directory: header, one panel per metric (a line per setting), a heat map
over two grid axes, the sources of error (when the study names them) and the table of cells.

It reads ``study.json`` (cells, status, specs), ``study.yaml`` (the ``report`` and ``errors`` keys) and
``aggregate.parquet`` (see :mod:`modelcollapse.study.results`); a study without results still gets its
header and its table of cells. The page is self-contained (figures embedded as PNG, also saved in
``figures/``), styled as a run's report, with the same table of contents, section anchors, narrow-screen
and print styles (:func:`.page.document`).

``errors: {metric: NAME or [NAMES], sources: {label: variant}}`` compares named cells (variants), each
the model with one source of error: the first metric the aggregate has for every source is read as a
distance from the original (larger: further). A label ``all`` is the model with every source at once.
Where the variants are crossed with a grid, each source is read at the first setting's grid values.

``report: {heatmap: false}`` leaves the heat map out. ``report: {mitigations: ...}`` adds the mitigations
section (:mod:`.mitigations`): how much real data or detector quality keeps each family's metric near
generation 0, in figures and one sentence per family, which also heads the page and is written to
``tables/mitigations.json``.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np
import yaml
from matplotlib import colormaps
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from ..store import atomic_write
from ..study.index import STATUSES, StudyDir
from . import figures, mitigations
from .page import Page, _remove_stale, document, duration, esc, num, table

STATUS_CLASSES = ("completed", "running", "interrupted", "failed")  # the run report's colours; others grey


def _label(value: Any) -> str:
    """A grid value as text: the same text whatever its type in study.json or the aggregate."""
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, dict):  # a whole section, e.g. {kind: mix, real_fraction: 0.1}: "mix 0.1"
        return " ".join(_label(v) for v in value.values())
    return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))


def _settings(index: dict) -> dict[str, dict]:
    """Setting -> {"values": axis -> label (``variant`` included where the study names cells), "spec"}."""
    out: dict[str, dict] = {}
    for e in index["cells"]:
        values = {k: _label(v) for k, v in e["values"].items()}
        if e.get("variant") is not None:
            values["variant"] = e["variant"]
        out.setdefault(e["setting"], {"values": values, "spec": e.get("spec"), "variant": e.get("variant")})
    return out


def _axes(settings: dict[str, dict]) -> dict[str, list[str]]:
    """Axis -> its values in study order (``variant`` last)."""
    axes: dict[str, list[str]] = {}
    for s in settings.values():
        for k, v in s["values"].items():
            axes.setdefault(k, [])
            if v not in axes[k]:
                axes[k].append(v)
    return axes


def _colours(n: int) -> list:
    cmap = colormaps["tab10" if n <= 10 else "tab20"]
    return [cmap(i % cmap.N) for i in range(n)]


def _read_aggregate(path: Path) -> tuple[Any, str | None]:
    import pandas as pd

    try:
        agg = pd.read_parquet(path / "aggregate.parquet")
    except FileNotFoundError:
        return None, "No results yet: no cell has completed (aggregate.parquet is missing)."
    except Exception as exc:  # noqa: BLE001 - a damaged table: the page says so and shows the cells
        return None, f"aggregate.parquet cannot be read: {type(exc).__name__}: {exc}"
    if agg.empty:
        return None, "aggregate.parquet holds no values (no completed cell recorded a scalar metric)."
    return agg, None


def _curve(agg: Any, setting: str, metric: str) -> tuple[np.ndarray, ...]:
    part = agg[(agg["setting"] == setting) & (agg["metric"] == metric)].sort_values("generation")
    return tuple(part[c].to_numpy(dtype=float) for c in ("generation", "mean", "ci_low", "ci_high", "n"))


def _band(ax: Any, gens: np.ndarray, mean: np.ndarray, lo: np.ndarray, hi: np.ndarray, colour: Any, label: str) -> None:
    """Mean with its 95% bootstrap band, thinned to about :data:`figures.MAX_POINTS` points."""
    idx = figures._thin(len(gens))
    ax.fill_between(gens[idx], lo[idx], hi[idx], color=colour, alpha=0.18, lw=0)
    ax.plot(gens[idx], mean[idx], color=colour, lw=1.5, label=label, marker="o" if len(gens) == 1 else None, ms=3)


def _theory_means(settings: dict[str, dict], wanted: list[str]) -> dict[str, dict[str, np.ndarray]]:
    """Setting -> metric -> the closed-form mean over generations, where one applies (its first cell's spec)."""
    from .. import theory
    from ..config import validate

    out = {}
    for name in wanted:
        try:
            with warnings.catch_warnings():  # an overflow far out in a long chain: the curve ends in inf
                warnings.simplefilter("ignore", RuntimeWarning)
                found, _ = theory.collect(validate(dict(settings[name]["spec"])))
        except Exception:  # noqa: BLE001 - no spec, an old spec, or a theory that fails: no curve
            continue
        means = {m: np.asarray(c["mean"], dtype=float) for m, c in found.items() if "mean" in c}
        if means:
            out[name] = means
    return out


def curves_figure(agg: Any, metrics: list[str], order: list[str], theory: dict[str, dict]) -> Figure:
    """One panel per metric, one line per setting: the mean over replicates and seeds with its 95% band,
    and the theory's mean dashed in the setting's colour."""
    ncols = min(3, len(metrics))
    nrows = -(-len(metrics) // ncols)
    fig = Figure(figsize=(9, 2.6 * nrows + 0.25 * (1 + len(order) // 3)), layout="constrained")
    colours = dict(zip(order, _colours(len(order))))
    dashed = False
    for i, metric in enumerate(metrics):
        ax = fig.add_subplot(nrows, ncols, i + 1)
        drawn, last = [], 0
        for setting in order:
            gens, mean, lo, hi, _ = _curve(agg, setting, metric)
            if not len(gens):
                continue
            _band(ax, gens, mean, lo, hi, colours[setting], setting)
            drawn.append(mean)
            last = max(last, int(gens[-1]))
            curve = theory.get(setting, {}).get(metric)
            if curve is not None:
                g = gens[gens < len(curve)].astype(int)
                idx = figures._thin(len(g))
                ax.plot(g[idx], curve[g[idx]], color=colours[setting], lw=1.0, ls="--")
                drawn.append(curve[g])
                dashed = True
        if drawn and figures._wants_log(*drawn):
            ax.set_yscale("log")
        ax.set_title(metric, loc="left")
        figures.integer_generations(ax, last, nbins=5)  # a third of the page wide
    handles = [Line2D([], [], color=colours[s], lw=1.5, label=s) for s in order]
    if dashed:
        handles.append(Line2D([], [], color="#555", lw=1.0, ls="--", label="theory (mean)"))
    fig.legend(handles=handles, loc="outside lower center", ncol=min(3, len(handles)))
    return fig


def heatmap_figure(matrix: np.ndarray, xs: list[str], ys: list[str], x: str, y: str, title: str) -> Figure:
    """``matrix`` (len(ys), len(xs)) as colours with each value written in; NaN: a grey "missing"."""
    fig = Figure(figsize=(min(9, 2.2 + 1.1 * len(xs)), 1.4 + 0.55 * len(ys)), layout="constrained")
    ax = fig.add_subplot()
    finite = matrix[np.isfinite(matrix)]
    log = finite.size > 1 and finite.min() > 0 and finite.max() / finite.min() > 100
    image = ax.imshow(np.ma.masked_invalid(matrix), cmap=colormaps["viridis"].with_extremes(bad="#e4e4e4"),
                      aspect="auto", norm=LogNorm() if log else None)
    for (r, c), v in np.ndenumerate(matrix):
        if np.isfinite(v):
            dark = sum(image.cmap(image.norm(v))[:3]) < 1.5
            ax.text(c, r, num(v), ha="center", va="center", fontsize=8, color="white" if dark else "black")
        else:
            ax.text(c, r, "missing", ha="center", va="center", fontsize=8, color="#777", style="italic")
    ax.set_xticks(range(len(xs)), xs)
    ax.set_yticks(range(len(ys)), ys)
    ax.set_xlabel(x)
    ax.set_ylabel(y)
    ax.grid(False)
    ax.set_title(title, loc="left")
    if finite.size:
        fig.colorbar(image, ax=ax)
    return fig


def errors_figure(data: dict[str, tuple[np.ndarray, ...]], metric: str, last: int) -> Figure:
    """One source of error per line (label -> generations, mean, ci_low, ci_high, n); ``all`` in black."""
    fig = Figure(figsize=(8, 3.2), layout="constrained")
    ax = fig.add_subplot()
    for (label, (g, mean, lo, hi, _)), colour in zip(data.items(), _colours(len(data))):
        _band(ax, g, mean, lo, hi, "#222" if label.lower() == "all" else colour, label)
    figures.integer_generations(ax, last)
    ax.set_title(f"{metric}: mean over replicates with its 95% bootstrap interval, per source", loc="left")
    ax.legend(loc="best")
    return fig


# -- sections -------------------------------------------------------------------------------------------
def header(index: dict, definition: dict, settings: dict, page: Page) -> None:
    cells = index["cells"]
    counts = {s: sum(e.get("status") == s for e in cells) for s in STATUSES}
    pills = " ".join(f"<span class='status {s if s in STATUS_CLASSES else 'unknown'}'>{n} {s}</span>"
                     for s, n in counts.items() if n)
    status = str(index.get("status", "unknown"))
    klass = status if status in STATUS_CLASSES else "unknown"
    facts = [(esc(axis), esc(", ".join(values))) for axis, values in _axes(settings).items()]
    facts += [("seeds", esc(", ".join(str(s) for s in index.get("seeds", [])))),
              ("cells / settings", f"{len(cells)} / {len(settings)}"),
              ("total cell time", esc(duration(sum(e.get("seconds") or 0 for e in cells)))),
              ("started / finished", esc(f"{index.get('started') or '–'} / {index.get('finished') or '–'}")),
              ("base", esc(str(definition.get("base", "–"))[:200]))]
    page.add(f"<h1>{esc(index.get('name', 'study'))}</h1><p class='desc'>{esc(index.get('description') or '')}</p>"
             f"<div class='banner {klass}'><span class='status {klass}'>{esc(status)}</span> {pills}</div>"
             + table(facts))


def curves_section(agg: Any, settings: dict, metrics: list[str], page: Page) -> None:
    order = [s for s in settings if (agg["setting"] == s).any()]
    missing = [s for s in settings if s not in order]
    theory = _theory_means(settings, order)
    page.add("<h2>Metrics over generations</h2>")
    caption = ("Each line: one setting's mean over its replicates and seeds, with the 95% bootstrap interval of "
               "the mean (shaded)." + (" Dashed: the closed-form mean of the setting's first cell." if theory else ""))
    if missing:
        caption += f" No results for: {', '.join(missing)}."
    page.figure("study_metrics", curves_figure(agg, metrics, order, theory), esc(caption))


def _heatmap_choice(config: Any, metrics: list[str], axes: dict[str, list[str]], last: int) -> tuple[Any, ...]:
    """(metric, generation, x, y, notes) from ``report: {heatmap: ...}``; an unknown name: a note and the default."""
    notes = []
    config = config if isinstance(config, dict) else {}
    varying = [a for a, v in axes.items() if len(v) > 1]
    metric = config.get("metric", metrics[0])
    if metric not in metrics:
        notes.append(f"report.heatmap.metric {metric!r} is not in the results ({', '.join(metrics)}); "
                     f"showing {metrics[0]}.")
        metric = metrics[0]
    generation = config.get("generation", -1)
    if isinstance(generation, bool) or not isinstance(generation, int) or not -last - 1 <= generation <= last:
        notes.append(f"report.heatmap.generation {generation!r} is not a generation of 0-{last}; showing the last.")
        generation = -1
    generation = generation % (last + 1)
    chosen = []
    for key in ("x", "y"):
        axis = config.get(key)
        if axis is not None and (not isinstance(axis, str) or axis not in axes or axis in chosen):
            notes.append(f"report.heatmap.{key} {axis!r} is not a {'further ' if axis in chosen else ''}axis of this "
                         f"study ({', '.join(axes)}).")
            axis = None
        if axis is None:
            axis = next((a for a in varying if a not in chosen), None)
        chosen.append(axis)
    return metric, generation, chosen[0], chosen[1], notes


def heatmap_section(agg: Any, settings: dict, metrics: list[str], config: Any, page: Page) -> None:
    axes = _axes(settings)
    last = int(agg["generation"].max())
    metric, g, x, y, notes = _heatmap_choice(config, metrics, axes, last)
    page.add("<h2>Heat map</h2>" + "".join(f"<p>{esc(n)}</p>" for n in notes))
    if x is None or y is None:
        page.add("<p>No heat map: it needs two axes with more than one value each.</p>")
        return
    first = next(iter(settings.values()))["values"]
    fixed = {a: first.get(a) for a in axes if a not in (x, y) and len(axes[a]) > 1}
    rows = agg[(agg["metric"] == metric) & (agg["generation"] == g)].set_index("setting")["mean"]
    matrix = np.full((len(axes[y]), len(axes[x])), np.nan)
    for name, s in settings.items():
        v = s["values"]
        if all(v.get(a) == value for a, value in fixed.items()) and name in rows.index:
            matrix[axes[y].index(v[y]), axes[x].index(v[x])] = rows[name]
    other = ", ".join(f"{a}={v}" for a, v in fixed.items())
    other = f" Other axes at the first setting's values: {other}." if other else ""
    page.figure("study_heatmap", heatmap_figure(matrix, axes[x], axes[y], x, y, f"{metric} at generation {g}"),
                esc(f"{metric}: the mean over replicates and seeds at generation {g}, by {x} and {y}; grey: no result."
                    + other))


def _source_settings(errors: Any, settings: dict) -> tuple[dict[str, str], list[str]]:
    """Label -> the setting that holds its variant (at the first setting's grid values), and problems."""
    if not isinstance(errors, dict) or not isinstance(errors.get("sources"), dict) or not errors["sources"]:
        return {}, ["errors: needs sources: {label: variant, ...} naming cells of the study."]
    first = {k: v for k, v in next(iter(settings.values()))["values"].items() if k != "variant"}
    out, problems = {}, []
    for label, variant in errors["sources"].items():
        match = [n for n, s in settings.items() if s["variant"] == variant
                 and all(s["values"].get(k) == v for k, v in first.items())]
        if match:
            out[str(label)] = match[0]
        else:
            known = sorted({str(s["variant"]) for s in settings.values() if s["variant"] is not None})
            problems.append(f"errors.sources.{label}: {variant!r} is not a named cell of this study "
                            f"(cells: {', '.join(known) or 'none'}).")
    return out, problems


def _ci(mean: float, lo: float, hi: float) -> str:
    return f"{num(mean)} [{num(lo)}, {num(hi)}]"


def _sentence(g: int, metric: str, at: dict[str, tuple[float, float, float, float]]) -> str | None:
    """Which single source (a label other than ``all``) moves the model furthest at generation g."""
    singles = sorted((k for k in at if k.lower() != "all" and np.isfinite(at[k][0])), key=lambda k: -at[k][0])
    if not singles:
        return None
    lead = singles[0]
    text = f"At generation {g}, {lead} alone moves the model furthest ({metric} {_ci(*at[lead][:3])})"
    if len(singles) > 1:
        run = singles[1]
        if at[lead][1] <= at[run][2] or not np.isfinite(at[lead][1] + at[run][2]):
            text += (f", but {run} ({_ci(*at[run][:3])}) cannot be told apart from it at {int(at[lead][3])} "
                     "replicates: their 95% intervals overlap")
        else:
            text += f", ahead of {run} ({_ci(*at[run][:3])})"
        text += "".join(f", then {k} ({_ci(*at[k][:3])})" for k in singles[2:])
    together = [k for k in at if k.lower() == "all"]
    if together:
        text += f"; all together: {_ci(*at[together[0]][:3])}"
    return text + "."


def errors_section(agg: Any, settings: dict, errors: Any, page: Page) -> None:
    if errors is None:
        return
    page.add("<h2>Sources of error</h2>")
    sources, problems = _source_settings(errors, settings)
    names = errors.get("metric") if isinstance(errors, dict) else None
    names = [names] if isinstance(names, str) else list(names or [])
    have = lambda m: all(((agg["setting"] == s) & (agg["metric"] == m)).any() for s in sources.values())  # noqa: E731
    metric = next((m for m in names if have(m)), None)
    if sources and metric is None:
        problems.append(f"errors.metric: none of {', '.join(map(str, names)) or '(none given)'} has results for every "
                        f"source; the results have {', '.join(agg['metric'].unique())}.")
    if problems:
        page.add("".join(f"<p>{esc(p)}</p>" for p in problems))
        return
    data = {label: _curve(agg, s, metric) for label, s in sources.items()}
    last = int(min(d[0][-1] for d in data.values()))
    gens = sorted({int(round(v)) for v in np.linspace(1, last, 4)}) if last >= 1 else [0]
    grid = ", ".join(f"{k}={v}" for k, v in next(iter(settings.values()))["values"].items() if k != "variant")
    page.figure("study_errors", errors_figure(data, metric, last), esc(
        f"Each source of error alone (a named cell), read as a distance from the original: larger {metric} is "
        f"further." + (f" Read at the first setting's grid values, {grid}: a source's other settings are not pooled."
                       if grid else "")))

    def at(g: int) -> dict[str, tuple[float, float, float, float]]:
        out = {}
        for label, (gg, mean, lo, hi, n) in data.items():
            i = np.flatnonzero(gg == g)
            out[label] = (mean[i[0]], lo[i[0]], hi[i[0]], n[i[0]]) if len(i) else (np.nan,) * 4
        return out

    rows = [(str(g), *[_ci(*v[:3]) for v in at(g).values()]) for g in gens]
    page.add(table(rows, ("generation", *map(esc, data))))
    said = [_sentence(g, metric, at(g)) for g in dict.fromkeys((gens[0], gens[-1]))]
    page.add("".join(f"<p>{esc(s)}</p>" for s in said if s))


def cells_section(path: Path, index: dict, page: Page) -> None:
    rows = []
    for e in index["cells"]:
        name = esc(e["name"])
        if (path / e["path"] / "report.html").is_file():
            name = f"<a href=\"{esc(quote(e['path'] + '/report.html', safe='/=+,'))}\">{name}</a>"
        status = str(e.get("status"))
        error = str(e.get("error") or "")
        rows.append((name, esc(e["setting"]), str(e["seed"]),
                     f"<span class='status {status if status in STATUS_CLASSES else 'unknown'}'>{esc(status)}</span>",
                     esc(duration(e.get("seconds"))).replace(" ", "&nbsp;"),  # "0.6 s" on one line
                     esc(error if len(error) <= 200 else error[:199] + "…")))
    page.add("<h2>Cells</h2>" + table(rows, ("cell", "setting", "seed", "status", "time", "error")))


def _mitigations(path: Path, index: dict, definition: dict) -> dict | None:
    """The mitigations section's numbers (None without ``report.mitigations``), also written to
    ``tables/mitigations.json``; a failure becomes a note on the page, not a missing report."""
    try:
        answer = mitigations.analyse(path, index, definition)
    except Exception as exc:  # noqa: BLE001 - the rest of the report still stands
        return {"notes": [f"the mitigations section failed: {type(exc).__name__}: {exc}"], "families": {},
                "config": None}
    if answer is not None and answer.get("families"):
        mitigations.write_json(path, answer)
    return answer


def write_study_report(path: str | Path) -> Path:
    """Write ``figures/*.png`` and a self-contained ``report.html`` into a study directory; return the HTML path."""
    path = Path(path)
    folder = StudyDir.open(path)
    index = folder.read()
    try:
        definition = folder.definition()
    except (OSError, yaml.YAMLError):
        definition = None
    definition = definition if isinstance(definition, dict) else {}
    settings = _settings(index)
    agg, problem = _read_aggregate(path)
    page = Page(path / "figures", lambda msg: None)
    answer = _mitigations(path, index, definition) if agg is not None else None
    with figures.style():
        header(index, definition, settings, page)
        mitigations.lead(answer, page)
        if agg is None:
            page.add(f"<p>{esc(problem)}</p>")
        else:
            metrics = list(dict.fromkeys(agg["metric"]))
            curves_section(agg, settings, metrics, page)
            report = definition.get("report")
            heatmap = report.get("heatmap") if isinstance(report, dict) else None
            if heatmap is not False:
                heatmap_section(agg, settings, metrics, heatmap, page)
            errors_section(agg, settings, definition.get("errors"), page)
            mitigations.section(answer, page)
        cells_section(path, index, page)
    _remove_stale(page)
    doc = document(f"{index.get('name', 'study')}: model collapse study", page.parts)
    atomic_write(path / "report.html", doc.encode())
    return path / "report.html"


__all__ = ["curves_figure", "errors_figure", "heatmap_figure", "write_study_report"]
