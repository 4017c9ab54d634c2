"""The report's core sections, the same for every run: header, metric curves, vector metrics,
provenance, stopped replicates and the files of the run directory."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from .. import metrics, schedules
from ..policies import POLICIES
from ..registry import UnknownNameError
from . import figures
from .page import Page, duration, esc, num, safe_name, size, table
from .run import Run
from .section import FILES, HEADER, METRICS, PROVENANCE, STOPPED, THEORY, VECTORS, Section
from .theory import theory_section

# -- sections -----------------------------------------------------------------------------------
STATUS_TEXT = {
    "completed": "The run completed.",
    "running": "The run is still running (or was killed before it could record otherwise): "
               "this report is a snapshot of what was recorded so far.",
    "interrupted": "The run was interrupted: this report shows the generations recorded before that.",
    "failed": "The run failed: this report shows the generations recorded before the error.",
}


def spec_cell(part: Any) -> str:
    """A spec section as one escaped line: ``kind (key=value, ...)`` (the header's, a notebook summary's)."""
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
    policy = POLICIES.get(spec.policy.kind).describe(spec.policy) if spec.policy.kind in POLICIES else spec.policy.kind
    facts = [
        ("generations with metrics", f"{esc(shown)} (planned: 0–{spec.generations})"),
        ("last checkpoint", esc(str(man.get("generations_completed", "–")))),
        ("replicates", f"{spec.replicates} ({len(run.stopped)} stopped)" if run.stopped else str(spec.replicates)),
        ("elapsed", esc(duration(man.get("elapsed_seconds")))),
        ("started / finished", esc(f"{man.get('started') or '–'} / {man.get('finished') or '–'}")),
        ("data", spec_cell(spec.data)), ("model", spec_cell(spec.model)), ("policy", esc(policy)),
        ("train size / held-out size", f"{esc(schedules.describe(spec.train_size, spec.generations))} / "
                                       f"{spec.heldout_size}"),
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
    found = run.theory[0]
    drawn_elsewhere = set(detector_metrics(run))  # the provenance section draws a filter's detector
    for name, values in run.scalars.items():
        if name in drawn_elsewhere:
            continue
        description, curve = _description(run, name), found.get(name)
        fig = metric_figure(run, name)
        caption = (f"<b>{esc(name)}</b>: {esc(description)}. Median [5%, 95%] over replicates at generation 0: "
                   f"{_summary(values, 0)}; at generation {last}: {_summary(values, last)}.")
        if curve is not None:
            caption += f" Red: theory ({esc(curve['label'])}): {esc(curve['about'])}"
        page.figure(f"metric_{safe_name(name)}", fig, caption)


def metric_figure(run: Run, name: str) -> Figure:
    """The report's figure of one metric: a scalar's median, 5-95% band, a few replicates and the theory
    curves that apply; a vector metric's band per component (a notebook's ``RunView.plot`` draws this too)."""
    if name in run.vectors:
        return figures.component_weights(run.vectors[name])
    return figures.metric_curve(run.scalars[name], name, _description(run, name), run.theory[0].get(name),
                                run.spec.report.replicates_shown)


def vector_section(run: Run, page: Page) -> None:
    for name in run.vectors:
        if name in run.drawn:  # a data kind's section has drawn it its own way (the class mix)
            continue
        description = _description(run, name)
        page.add(f"<h2>{esc(name)}</h2>")
        page.figure(f"vector_{safe_name(name)}", metric_figure(run, name), esc(
            f"{description}. Median over replicates with the 5–95% band, component by size rank."))


#: The composition figure's sources: by how many generations before g the examples were drawn.
SHARE_LABELS = ("real data", "previous generation", "2 generations back", "older generations")


def provenance_shares(lines: list[dict]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Per generation, the share of the training set (mean counts over replicates) that is real, drawn
    from the previous generation's model, from the one two generations back, or from older ones; only
    the sources that occur. Shares are of the mean kept count (a filter's training sets differ in size)."""
    lines = sorted((ln for ln in lines if ln.get("size")), key=lambda ln: ln["generation"])
    gens = np.array([ln["generation"] for ln in lines], dtype=int)
    shares: dict[str, list[float]] = {label: [] for label in SHARE_LABELS}
    for ln in lines:
        sources = ln.get("sources") or {"real": ln.get("real", 0), str(ln["generation"] - 1): ln.get("synthetic", 0)}
        total = float(sum(sources.values())) or float(ln["size"])
        by_age = [0.0] * len(SHARE_LABELS)
        for key, count in sources.items():
            age = 0 if key == "real" else min(ln["generation"] - int(key), len(SHARE_LABELS) - 1)
            by_age[age] += float(count) / total
        for label, share in zip(SHARE_LABELS, by_age):
            shares[label].append(share)
    return gens, {k: np.array(v) for k, v in shares.items() if np.any(np.array(v) > 1e-9)}


def mean_sizes(lines: list[dict]) -> dict[int, float]:
    """Each generation's mean training-set size over replicates (the sum of its mean counts by source)."""
    return {ln["generation"]: float(sum((ln.get("sources") or {}).values()) or ln["size"])
            for ln in lines if ln.get("size")}


def detector_metrics(run: Run) -> dict[str, np.ndarray]:
    """What the run's policy recorded each generation (its ``metric_names()``: a filter's detector), when
    any holds a value: drawn in the provenance section, not as ordinary metric curves."""
    try:
        names = POLICIES.get(run.spec.policy.kind).build(run.spec.policy).metric_names()
    except (UnknownNameError, TypeError, ValueError):  # a policy this version no longer knows
        return {}
    found = {name: run.scalars[name] for name in names if name in run.scalars}
    return found if any(np.isfinite(v).any() for v in found.values()) else {}


def _size_text(size: float) -> str:
    return f"{size:.0f}" if float(size).is_integer() else f"{size:.4g} (mean over replicates)"


def provenance_section(run: Run, page: Page) -> None:
    gens, shares = provenance_shares(run.provenance)
    if not len(gens):
        return
    spec = run.spec
    sizes = mean_sizes(run.provenance)
    policy = POLICIES.get(spec.policy.kind).describe(spec.policy) if spec.policy.kind in POLICIES else spec.policy.kind
    real = {int(g): float(s) for g, s in zip(gens, shares.get("real data", np.zeros(len(gens))))}
    page.add("<h2>Provenance of the training data</h2>")
    first = int(gens[1]) if len(gens) > 1 else int(gens[0])  # the first generation with synthetic data
    last = int(gens[-1])
    caption = (f"Policy {policy}. Training-set size {_size_text(sizes[gens[0]])} at generation {gens[0]}, "
               f"{_size_text(sizes[last])} at generation {last}. Synthetic share of the training set (mean over "
               f"replicates): {num(1 - real[first])} at generation {first}, {num(1 - real[last])} at generation "
               f"{last}. "
               "Per-example sources: modelcollapse lineage DIR --generation G [--index I].")
    page.figure("provenance", figures.provenance(gens, shares), esc(caption))
    found = detector_metrics(run)
    if found:
        page.figure("provenance_detector", figures.detector(found), esc(_detector_caption(run, found)))


def _detector_caption(run: Run, found: dict[str, np.ndarray]) -> str:
    base = getattr(run.spec.policy, "base", None)
    detector = getattr(run.spec.policy, "detector", None)
    action = getattr(run.spec.policy, "action", None)
    about = (f"Filter: detector {getattr(detector, 'kind', '?')}, action {action or '?'}, base policy "
             f"{getattr(base, 'kind', '?')}. ")
    last = max(len(v) for v in found.values()) - 1
    words = {"detector_accuracy": "accuracy", "detector_precision": "precision", "detector_recall": "recall",
             "detector_false_positive_rate": "false-positive rate",
             "synthetic_passed": "synthetic share of the final training set", "train_kept": "effective training size"}
    medians = []
    for name, label in words.items():
        if name in found:
            med = figures.quantiles(found[name][last : last + 1])[1, 0]
            medians.append(f"{label} {num(med)}")
    return (about + "Left: how the detector judged each generation's candidates; right: the synthetic share "
            "and the effective size (sum of weights) of what it let into training. Median over replicates at "
            f"generation {last}: " + ", ".join(medians) + ".")


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
            # every file below it (trackers/ holds only folders), by its path inside the folder
            inside = sorted(f for f in p.rglob("*") if f.is_file() and not f.name.startswith("."))
            first, last = (f.relative_to(p).as_posix() for f in (inside[0], inside[-1])) if inside else ("", "")
            span = f": {first} … {last}" if len(inside) > 1 else ""
            total = size(sum(f.stat().st_size for f in inside))
            rows.append((esc(p.name + "/"), esc(f"{len(inside)} files, {total}{span}")))
        else:
            rows.append((esc(p.name), esc(size(p.stat().st_size))))
    if not (run.path / "report.html").exists():
        rows.append(("report.html", "this page"))
    page.add("<h2>Files in the run directory</h2>" + table(rows))


CORE = (
    Section("header", HEADER, header),
    Section("metrics", METRICS, metric_section),
    Section("theory", THEORY, theory_section),
    Section("vectors", VECTORS, vector_section),
    Section("provenance", PROVENANCE, provenance_section),
    Section("stopped", STOPPED, stopped_section),
    Section("files", FILES, files_section),
)
