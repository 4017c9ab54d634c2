"""The report's theory section: the closed forms of :mod:`modelcollapse.theory` against the simulation.

The metric figures draw each applicable curve over its metric (see ``sections.metric_section``); this
section adds the table that puts a number on the agreement (theory, simulation, Monte Carlo standard
error, z-score at a few generations), the probability-of-collapse figure and the sample-size schedule
figure. It reads the curves generically (a curve says which statistic it is and, for ``p_collapsed``,
which metric and threshold define "collapsed"), so it names no family or data kind.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from . import figures
from .page import Page, esc, num, table
from .run import Run

#: A statistic the theory gives, and how the replicates' own value is computed.
LEVELS = {"q05": 0.05, "median": 0.5, "q95": 0.95}


def table_generations(last: int, n: int = 5) -> list[int]:
    """Up to ``n`` generations spread over 0..last, always with both ends."""
    return sorted({int(round(x)) for x in np.linspace(0, last, n)}) if last > 0 else [0]


def compare(values: np.ndarray, curve: dict[str, Any], key: str, g: int) -> tuple[float, float, float, float] | None:
    """(theory, simulated, Monte Carlo s.e., z) for one statistic of one metric at generation g, or None when
    the replicates give nothing finite to compare. For a quantile the z-score is that of the share of
    replicates below the theoretical quantile (binomial), which is what "the band covers the replicates"
    means; for a mean or the root mean square, that of the replicates' average."""
    x = values[g]
    x = x[~np.isnan(x)]
    if key not in curve or g >= len(curve[key]) or len(x) < 2:
        return None
    th = float(curve[key][g])
    if key in LEVELS:
        level = LEVELS[key]
        sim = float(np.quantile(x, level))
        below = float(np.mean(x <= th))
        se = float(np.sqrt(level * (1 - level) / len(x)))
        return th, sim, se, (below - level) / se  # se: of the share below, not of the quantile
    if not np.all(np.isfinite(x)) or not np.isfinite(th):
        return None
    if key == "rms":
        sq = x**2
        sim, se = float(np.sqrt(sq.mean())), float(sq.std(ddof=1) / np.sqrt(len(x)))
        z = (sq.mean() - th**2) / se if se > 0 else (0.0 if np.isclose(sq.mean(), th**2) else np.inf)
        return th, sim, se / (2 * max(sim, 1e-300)), float(z)
    sim, se = float(x.mean()), float(x.std(ddof=1) / np.sqrt(len(x)))
    if "sd" in curve:
        # A heavy-tailed metric (the variance ratio after many generations): a few replicates hold the mean
        # and the sample's own spread underestimates it, so the exact spread gives the standard error.
        se = float(curve["sd"][g] / np.sqrt(len(x)))
    z = (sim - th) / se if se > 0 else (0.0 if np.isclose(sim, th) else np.inf)
    return th, sim, se, float(z)


def collapsed_share(run: Run, curve: dict[str, Any]) -> tuple[np.ndarray, np.ndarray] | None:
    """(share, replicates counted) per recorded generation: the replicates the ``p_collapsed`` curve counts
    as collapsed by then, those whose metric has been below the curve's level at some generation so far."""
    values = run.scalars.get(curve.get("metric", ""))
    if values is None:
        return None
    with warnings.catch_warnings(), np.errstate(invalid="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        lowest = np.fmin.accumulate(values, axis=0)  # NaN (a stopped replicate) keeps its lowest so far
        counted = (~np.isnan(lowest)).sum(axis=1)
        return (lowest < curve["below"]).sum(axis=1) / np.maximum(counted, 1), counted


def _rows(run: Run, found: dict[str, dict[str, Any]],
          collapsed: tuple[np.ndarray, np.ndarray] | None) -> list[tuple[str, ...]]:
    rows = []
    gens = table_generations(run.generations - 1)
    for name, curve in found.items():
        values = run.scalars.get(name)
        if values is None:
            continue
        for key in ("mean", "rms", "median", "q05", "q95", "upper"):
            for g in gens:
                got = compare(values, curve, key, g)
                if got is None:
                    continue
                th, sim, se, z = got
                shown_se = f"{num(se)} (of the share)" if key in LEVELS else num(se)
                if curve["label"] == "bound" or key == "upper":
                    verdict = "holds" if sim <= th + 3 * se else "<b>exceeded</b>"
                else:
                    verdict = f"{z:+.1f}" if abs(z) <= 4 else f"<b>{z:+.1f}</b>"
                kind = "bound" if key == "upper" else curve["label"]
                rows.append((esc(name), esc(key), str(g), esc(kind), num(th), num(sim), shown_se, verdict))
    p = found.get("p_collapsed")
    if collapsed is not None:
        share, counted = collapsed
        for g in gens:
            th, n = float(p["mean"][g]), max(int(counted[g]), 1)
            se = float(np.sqrt(max(th * (1 - th), 0.25 / n) / n))  # never zero: one replicate either way
            z = (share[g] - th) / se
            rows.append(("p_collapsed", "share", str(g), esc(p["label"]), num(th), num(share[g]), num(se),
                         f"{z:+.1f}" if abs(z) <= 4 else f"<b>{z:+.1f}</b>"))
    return rows


def theory_section(run: Run, page: Page) -> None:
    found, notes, error = run.theory
    if error:
        page.add(f"<h2>Theory</h2><p>The closed forms could not be computed: <code>{esc(error)}</code></p>")
        return
    if not found:
        page.add(f"<h2>Theory</h2><p>{esc(notes[0] if notes else 'No closed form applies to this run.')}</p>")
        return
    if not run.generations:
        return
    page.add("<h2>Theory vs simulation</h2>")
    p = found.get("p_collapsed")
    collapsed = collapsed_share(run, p) if p else None  # for the table and the figure
    rows = _rows(run, found, collapsed)
    if rows:
        page.add(
            "<p>Each closed form that applies to this run, against the replicates at a few generations: the "
            "theory's value, the replicates' (their mean, root mean square or quantile), its Monte Carlo standard "
            "error and the z-score. For a quantile, the standard error and z are those of the share of replicates "
            "below the theoretical quantile. Where the theory knows the metric's spread exactly, the standard error "
            "of the mean uses it: the variance ratio's mean is carried by a few replicates after many generations, "
            "so its replicate average is far below the expectation while still consistent with it. |z| above 4 "
            "is in bold: with a few dozen rows, |z| near 3 happens by chance, above 4 it points to a mismatch. "
            "A bound is checked to hold.</p>"
            + table(rows, ("metric", "statistic", "generation", "kind", "theory", "simulation", "MC s.e.", "z")))
    facts = [(esc(name), esc(f"{c['label']}: {c['about']}")) for name, c in found.items()]
    page.add("<details><summary>what each result is</summary>" + table(facts) +
             ("<p>Not provided: " + esc(" ".join(notes)) + "</p>" if notes else "") + "</details>")
    if collapsed is not None:
        page.figure("theory_p_collapsed", figures.collapse_probability(p["mean"][: run.generations], collapsed[0]),
                    esc(f"Probability that a replicate has collapsed by generation g: {p['about']} Dots: the share "
                        "of this run's replicates."))
    regime = found.get("sum_inv_size")
    if regime is not None and "w2" in found:
        from ..theory import schedule_regimes

        curves = schedule_regimes(run.spec, found)
        if curves:
            page.figure("theory_schedules", figures.schedule_regimes(curves, run.spec.generations), esc(
                f"Sample-size schedules and the expected W2 distance. {regime['about']} Sum of 1/M_g over this run: "
                f"{regime['mean'][-1]:.4g}."))
