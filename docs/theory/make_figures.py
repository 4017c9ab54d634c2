"""Make the README's theory figures: each closed form of ``modelcollapse.theory`` over a simulation.

    python docs/theory/make_figures.py [NAME ...]   # writes docs/theory/*.png (40 s on one core; NAME: one figure)

Every figure is a small run of the engine (the chain the report draws) with the theory the report would
draw over it; the simulation sizes are printed, and the seed is fixed, so the figures are reproducible.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from modelcollapse import theory
from modelcollapse.chain import Chain
from modelcollapse.config import load_spec
from modelcollapse.report import figures
from modelcollapse.theory import wright_fisher as wf

OUT = Path(__file__).resolve().parent


def simulate(preset: str, overrides: list[str]) -> tuple[object, dict[str, np.ndarray]]:
    """The engine's chain, in memory: metric values (generation, replicate)."""
    spec = load_spec(preset, overrides)
    chain = Chain(spec)
    # Keep each generation's metrics only: its synthetic set (M_g examples a replicate) is large under a
    # growing schedule.
    rows = [chain.first().metrics] + [chain.step(g).metrics for g in range(1, spec.generations + 1)]
    chain.close()
    print(f"  {preset} {' '.join(overrides)}", file=sys.stderr)
    return spec, {m: np.stack([r[m] for r in rows]) for m in spec.metrics}


def panel() -> tuple[Figure, object]:
    fig = Figure(figsize=(8, 3.2), layout="constrained")
    return fig, fig.add_subplot()


def save(fig: Figure, name: str) -> None:
    with figures.style():
        fig.savefig(OUT / f"{name}.png", dpi=figures.DPI)
    print(f"wrote {OUT / name}.png", file=sys.stderr)


def variance_law() -> None:
    spec, v = simulate("gaussian", ["replicates=1000", "generations=200", "train_size=20",
                                    "metrics=[variance_ratio]", "metric_samples=2"])
    with figures.style():
        fig = figures.metric_curve(v["variance_ratio"], "variance_ratio", "M = 20, mle, 1000 replicates",
                                   theory.curves(spec)["variance_ratio"], shown=3)
    save(fig, "variance_law")


def log_det_3d() -> None:
    cov = "[[1.0, 0.5, 0.0], [0.5, 1.0, 0.2], [0.0, 0.2, 1.0]]"
    spec, v = simulate("gaussian", ["replicates=1000", "generations=60", "train_size=8", "data.mean=[0.0, 0.0, 0.0]",
                                    f"data.cov={cov}", "metrics=[log_det_ratio]", "metric_samples=2"])
    with figures.style():
        fig = figures.metric_curve(v["log_det_ratio"], "log_det_ratio", "d = 3, M = 8, mle, 1000 replicates",
                                   theory.curves(spec)["log_det_ratio"], shown=3)
    save(fig, "log_det_3d")


def w2_schedules() -> None:
    """The unbiased chain under a constant size and a size that grows like (g + 1)^2."""
    with figures.style():
        fig, ax = panel()
        for ts, colour in (("10", figures.THEORY), ("{kind: power, M0: 10, p: 2}", figures.MEDIAN)):
            spec, v = simulate("gaussian", ["replicates=1000", "generations=60", f"train_size={ts}",
                                            "model.estimator=unbiased", "metrics=[w2]", "metric_samples=2"])
            rms = theory.curves(spec)["w2"]["rms"]
            regime = theory.curves(spec)["sum_inv_size"]["converges"]
            label = f"train_size {ts}: sum 1/M {'converges' if regime else 'diverges'}"
            ax.plot(rms, color=colour, lw=1.6, ls="--", label=f"theory, {label}")
            ax.plot(np.sqrt(np.mean(v["w2"] ** 2, axis=1)), "o", ms=2.5, color=colour, alpha=0.6,
                    label="simulation (root mean square of 1000 replicates)")
        figures.integer_generations(ax, 60)
        ax.set_ylabel("root of E[w2²]")
        ax.set_title("W2 to the original: a constant size diverges, a size growing like g² stays bounded", loc="left")
        ax.legend(loc="upper left")
    save(fig, "w2_schedules")


def p_collapsed() -> None:
    spec, v = simulate("gaussian", ["replicates=1000", "generations=100", "train_size=10",
                                    "metrics=[variance_ratio]", "metric_samples=2"])
    p = theory.curves(spec)["p_collapsed"]
    with figures.style():
        share = (np.minimum.accumulate(v[p["metric"]], axis=0) < p["below"]).mean(axis=1)
        fig = figures.collapse_probability(p["mean"], share)
        fig.axes[0].set_title("P(variance ratio has fallen below 0.1 by generation g): Gaussian chain, M = 10",
                              loc="left")
    save(fig, "p_collapsed")


def accumulate() -> None:
    with figures.style():
        fig, ax = panel()
        for policy, colour in (("replace", figures.THEORY), ("accumulate", figures.MEDIAN)):
            spec, v = simulate("gaussian", ["replicates=2000", "generations=60", "train_size=10",
                                            "model.estimator=unbiased", f"policy.kind={policy}",
                                            "metrics=[mean_error]", "metric_samples=2"])
            found = theory.curves(spec)
            ax.plot(found["mean_error"]["mean"], color=colour, lw=1.6, ls="--", label=f"theory: {policy}")
            ax.plot(v["mean_error"].mean(axis=1), "o", ms=2.5, color=colour, alpha=0.6,
                    label=f"simulation: {policy} (mean of 2000)")
            if "upper" in found["mean_error"]:
                ax.plot(found["mean_error"]["upper"], color=colour, lw=1, ls=":",
                        label="bound: π²/6 × generation 0's error")
        figures.integer_generations(ax, 60)
        ax.set_ylabel("E[mean_error]")
        ax.set_title("the mean error grows without bound under replace, stays bounded under accumulate", loc="left")
        ax.legend(loc="upper left", ncol=2)
    save(fig, "accumulate")


def mix_fresh() -> None:
    with figures.style():
        fig, ax = panel()
        cases = (("replace", 0.0, figures.THEORY), ("mix", 0.1, figures.MEAN), ("fresh", 0.1, figures.MEDIAN),
                 ("fresh", 0.5, figures.REAL))
        for policy, f, colour in cases:
            spec, v = simulate("gaussian", ["replicates=2000", "generations=60", "train_size=10",
                                            f"policy.kind={policy}", f"policy.real_fraction={f}",
                                            "metrics=[variance_ratio]", "metric_samples=2"])
            ax.plot(theory.curves(spec)["variance_ratio"]["mean"], color=colour, lw=1.6, ls="--",
                    label=f"theory: {policy} {f:g}")
            ax.plot(v["variance_ratio"].mean(axis=1), "o", ms=2.5, color=colour, alpha=0.6)
        figures.integer_generations(ax, 60)
        ax.set_ylabel("E[variance_ratio]")
        ax.set_title("real data in each set holds the variance at a stationary level (M = 10, mle; dots: 2000 "
                     "replicates)", loc="left")
        ax.legend(loc="lower left", ncol=2)
    save(fig, "mix_fresh")


def wright_fisher() -> None:
    spec, v = simulate("discrete", ["replicates=2000", "generations=150", "train_size=20", "data.categories=10",
                                    "metrics=[support_size, tail_mass]"])
    found = theory.curves(spec)
    with figures.style():
        fig, ax = panel()
        ax.plot(found["support_size"]["mean"], color=figures.THEORY, lw=1.6, ls="--", label="theory: E[support size]")
        ax.plot(v["support_size"].mean(axis=1), "o", ms=2.5, color=figures.MEDIAN, alpha=0.6,
                label="simulation (mean of 2000)")
        ax.plot(found["p_collapsed"]["mean"] * 10, color=figures.THEORY, lw=1.2, ls=":",
                label="theory: P(one category left) × 10")
        ax.plot((v["support_size"] < 1.5).mean(axis=1) * 10, "s", ms=2, color=figures.MEAN, alpha=0.6,
                label="simulation: share with one category left × 10")
        figures.integer_generations(ax, 150)
        ax.set_title("Wright-Fisher: Zipf over 10 categories, M = 20", loc="left")
        ax.legend(loc="center right")
    save(fig, "wright_fisher")


def absorption() -> None:
    """Exact expected absorption time of the two-category chain against the diffusion approximation."""
    sizes = np.unique(np.round(np.logspace(np.log10(4), np.log10(1000), 25)).astype(int))
    with figures.style():
        fig, ax = panel()
        for p, colour in ((0.5, figures.THEORY), (0.1, figures.MEDIAN)):
            exact = np.array([wf.expected_absorption_time_exact(p, int(M)) for M in sizes])
            approx = np.array([wf.diffusion_absorption_time(p, int(M)) for M in sizes])
            ax.plot(sizes, approx / exact - 1, color=colour, lw=1.6, marker="o", ms=3, label=f"p = {p}")
        ax.set_xscale("log")
        ax.set_xlabel("M (examples a generation)")
        ax.set_ylabel("relative error")
        ax.set_title("diffusion approximation -2M[p ln p + (1-p) ln(1-p)] of the absorption time vs exact",
                     loc="left")
        ax.legend()
    save(fig, "absorption")


if __name__ == "__main__":
    only = sys.argv[1:]
    for make in (variance_law, log_det_3d, w2_schedules, p_collapsed, accumulate, mix_fresh, wright_fisher,
                 absorption):
        if not only or make.__name__ in only:
            make()
