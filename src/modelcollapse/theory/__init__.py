"""Theory beside the simulation: every closed form that applies to a run, as curves over generations.

>>> from modelcollapse import theory
>>> from modelcollapse.config import load_spec
>>> spec = load_spec("gaussian", ["generations=3", "train_size=10"])
>>> found = theory.curves(spec)
>>> sorted(found["variance_ratio"])
['about', 'label', 'mean', 'median', 'q05', 'q95', 'sd']
>>> [round(float(v), 4) for v in found["variance_ratio"]["mean"]]
[0.9, 0.81, 0.729, 0.6561]
>>> print(theory.applies(load_spec("kde")).splitlines()[0])
No closed form applies to a kde model of gmm data: the theory covers the Gaussian chain and the categorical (Wright-Fisher) chain.

:func:`curves` returns a dict keyed by metric name (``variance_ratio``, ``mean_error``, ``w2``, ``kl``,
``log_det_ratio``, ``support_size``, ``gini_simpson``, ``tail_mass``) plus named extras (``p_collapsed``,
``p_lost_tail``, ``sum_inv_size``, ``absorption_time``). Each value is a dict with
numpy arrays over generations 0..G under the keys that apply among ``mean``, ``median``, ``q05``, ``q95``
(and ``rms``, the root of E[x^2], for w2; ``sd``, the exact standard deviation over replicates, where known;
``upper``, a known upper bound on the mean, beside an exact mean),
a ``label`` ("exact", "bound" or "approximation") and ``about``,
one sentence with the assumptions and the reference. :func:`applies` says in words which results apply to a
spec and why the others do not.

The results and their derivations: :mod:`.gaussian` (the Gaussian chain under every policy and sample-size
schedule), :mod:`.log_chi2` (the exact law of the log variance ratio), :mod:`.wright_fisher`
(the categorical chain).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import gaussian as _g
from . import wright_fisher as _wf

#: P(collapsed by generation g) counts a replicate as collapsed once its variance ratio (or, in d > 1, the
#: d-th root of the determinant ratio) has been below this; a categorical chain once one category is left.
COLLAPSE_THRESHOLD = 0.1
#: Up to this constant size the expected absorption time is computed exactly (O(K M^2) per step for the
#: thousands of steps absorption takes); above it, the diffusion approximation.
EXACT_ABSORPTION_SIZE = 300
#: Exact curves are computed for the band's levels; the report draws q05..q95.
LEVELS = {"q05": 0.05, "median": 0.5, "q95": 0.95}

Curves = dict[str, dict[str, Any]]


def curves(spec: Any, *, threshold: float = COLLAPSE_THRESHOLD) -> Curves:
    """Every closed-form result that applies to ``spec`` for generations 0..``spec.generations``."""
    return _collect(spec, threshold)[0]


def applies(spec: Any) -> str:
    """In words: which results apply to ``spec``, and why the others do not (one line each)."""
    found, notes = _collect(spec, COLLAPSE_THRESHOLD)
    if not found:
        return "\n".join(notes)
    lines = [f"{name}: {c['label']}: {c['about']}" for name, c in found.items()]
    return "\n".join(lines + [f"not provided: {n}" for n in notes])


def collect(spec: Any, *, threshold: float = COLLAPSE_THRESHOLD) -> tuple[Curves, list[str]]:
    """(:func:`curves`, the reasons for what does not apply) in one computation, for the report."""
    return _collect(spec, threshold)


def expected(spec: Any, metric: str) -> np.ndarray | None:
    """E[metric] at generations 0..G when an exact closed form applies to ``spec``, else None."""
    found = curves(spec).get(metric)
    return found["mean"] if found and found["label"] == "exact" and "mean" in found else None


def schedule_regimes(spec: Any, found: Curves | None = None) -> dict[str, np.ndarray]:
    """The root of E[w2^2] of a Gaussian ``replace`` chain under this spec's schedule, a constant size M_0
    (sum 1/M_g diverges) and a power schedule M_0 (g + 1)^2 (it converges), for a figure of both regimes;
    empty where the w2 result does not apply. In d > 1 the curves are the upper bound. ``found``: this spec's
    :func:`curves`, when the caller has them already."""
    found = curves(spec) if found is None else found
    if "w2" not in found or "sum_inv_size" not in found:
        return {}
    from ..schedules import describe

    g = np.arange(spec.generations + 1)
    M0 = int(spec.sizes()[0])
    cov0 = np.atleast_2d(np.asarray(spec.data.cov, dtype=float))
    est = spec.model.estimator

    def rms(sizes: np.ndarray) -> np.ndarray:
        if cov0.shape[0] == 1:
            return np.sqrt(_g.replace_w2_squared(sizes, est, float(cov0[0, 0])))
        return np.sqrt(_g.replace_w2_squared_bound(sizes, est, float(np.trace(cov0))))

    out = {f"this run: {describe(spec.train_size, spec.generations)}": found["w2"]["rms"]}
    for label, sizes in ((f"constant {M0}: sum 1/M diverges", np.full(len(g), M0)),
                         (f"power {M0} (g+1)^2: sum 1/M converges", np.round(M0 * (g + 1.0) ** 2))):
        if not np.array_equal(sizes, spec.sizes()):  # the run's own schedule is drawn once
            out[label] = rms(sizes)
    return out


# -- which chain ------------------------------------------------------------------------------
def _effective_policy(spec: Any) -> tuple[str, float]:
    """The policy as the theory sees it: mix or fresh with no real data is replace."""
    kind, f = spec.policy.kind, float(getattr(spec.policy, "real_fraction", 0.0) or 0.0)
    if kind in ("mix", "fresh") and f == 0:
        return "replace", 0.0
    return kind, f


def _collect(spec: Any, threshold: float) -> tuple[Curves, list[str]]:
    model, data = spec.model.kind, spec.data.kind
    if model == "gaussian" and data == "gaussian":
        return _gaussian(spec, threshold)
    if model == "categorical":
        return _categorical(spec)
    return {}, [f"No closed form applies to a {model} model of {data} data: the theory covers the Gaussian chain "
                "and the categorical (Wright-Fisher) chain."]


def _curve(label: str, about: str, **arrays: Any) -> dict[str, Any]:
    return {**{k: (v if isinstance(v, (str, bool, float, int, type(None))) else np.asarray(v, dtype=float))
               for k, v in arrays.items()},
            "label": label, "about": about}


# -- the Gaussian chain -------------------------------------------------------------------------
def _gaussian(spec: Any, threshold: float) -> tuple[Curves, list[str]]:
    from .log_chi2 import LogDetLaw

    sizes = spec.sizes()
    est = spec.model.estimator
    cov0 = np.atleast_2d(np.asarray(spec.data.cov, dtype=float))
    d, tr0 = cov0.shape[0], float(np.trace(cov0))
    policy, f = _effective_policy(spec)
    out: Curves = {}
    notes: list[str] = []
    if policy == "replace":
        s = _g.replace_variance_ratio(sizes, est)
        m = _g.replace_mean_scale(sizes, est)
        full_rank = bool(np.all(sizes > d))
        law = LogDetLaw(sizes, d, est) if full_rank else None
        bands = {k: law.quantile(q) for k, q in LEVELS.items()} if law is not None else {}
        vr = {"mean": s, **({k: np.exp(v) for k, v in bands.items()} if d == 1 else {})}
        if d == 1:  # the spread of the ratio, exact: the report's standard error of the replicate mean uses it
            vr["sd"] = _g.replace_variance_ratio_sd(sizes, est)
        out["variance_ratio"] = _curve("exact", (
            "E[tr Sigma_g / tr Sigma0] = prod (M_j - 1) / D_j" + (
                "; median and 5-95% band from the exact law of log(sigma_g^2 / sigma0^2), a sum of independent "
                "log chi-square terms" if d == 1 and law is not None else "") +
            " (Shumailov et al. 2024, the single-Gaussian result of its supplementary information)."), **vr)
        if law is not None:
            out["log_det_ratio"] = _curve("exact", (
                "the exact law of log det(Sigma_g) / det(Sigma0): by the Bartlett decomposition a sum over "
                "generations of d independent log chi-square terms (Anderson 2003, Thm 7.5.3)."),
                mean=law.mean, **bands)
            out["kl"] = _curve("exact", (
                "E[KL(fit || original)] = (d s_g + d m_g - d - E[log det ratio]) / 2, with E[log det ratio] from "
                "the Bartlett decomposition."), mean=_g.replace_kl(sizes, est, d))
            out["p_collapsed"] = _curve("exact", (
                f"P(the variance ratio has fallen below {threshold:g} by generation g)" + ("" if d == 1 else
                f" (in d = {d}: (det Sigma_g / det Sigma0)^(1/d))") +
                ": the first passage of the log det ratio's random walk below the level, carried numerically from "
                "the exact step laws (numerical error below 1e-4)."),
                mean=_g.collapse_probability(sizes, d, est, threshold), threshold=threshold,
                metric="variance_ratio" if d == 1 else "log_det_ratio",
                below=threshold if d == 1 else d * np.log(threshold))
        else:
            notes.append(f"log_det_ratio, kl, p_collapsed: some generation has M_g <= d = {d} examples, so the "
                         "fitted covariance is singular (log det = -inf, KL = inf).")
        out["mean_error"] = _curve("exact", (
            "E[|mu_g - mu0|^2] = tr(Sigma0) sum_j s_{j-1} / M_j: each fitted mean is the previous one plus "
            "N(0, Sigma_{j-1} / M_j)."), mean=m * tr0)
        if d == 1:
            out["w2"] = _curve("exact", (
                "root of E[w2^2] = E[(mu_g - mu0)^2] + E[(sigma_g - sigma0)^2], with E[sigma_g] a product of chi "
                "means (exact in 1-D)."), rms=np.sqrt(_g.replace_w2_squared(sizes, est, float(cov0[0, 0]))))
        else:
            out["w2"] = _curve("bound", (
                f"upper bound on the root of E[w2^2] in d = {d}: tr(Sigma0) (m_g + s_g + 1) drops the "
                "non-negative cross term of the Bures distance; no closed form in d > 1."),
                rms=np.sqrt(_g.replace_w2_squared_bound(sizes, est, tr0)))
        out["sum_inv_size"] = _schedule_regime(spec, sizes)
        if d > 1:
            notes.append(f"variance_ratio quantiles in d = {d}: the trace's law has no closed form; the log_det_ratio "
                         "metric's has (add it to metrics to see its band and P(collapsed) in the report).")
    elif policy == "accumulate":
        s, m = _g.accumulate_moments(sizes, est)
        about = ("exact recursion: every set's mean is the previous fit's mean plus an independent error, so the "
                 "pooled fit's expectations are fixed combinations of earlier ones (Gerstgrasser et al. 2024).")
        out["variance_ratio"] = _curve("exact", "E[tr Sigma_g / tr Sigma0]: " + about, mean=s)
        bound = _g.accumulate_mean_error_bound(sizes, est)
        extra = {} if bound is None else {"upper": bound * tr0}
        out["mean_error"] = _curve("exact", "E[|mu_g - mu0|^2]: " + about + (
            " Upper: pi^2/6 x the generation-0 error tr(Sigma0) / M x the largest variance ratio so far, the bound "
            "of Dey and Donoho (2024): the mean error of an accumulating chain stays bounded." if extra else ""),
            mean=m * tr0, **extra)
        notes.append("quantiles under accumulate: only the expectations are known in closed form.")
    elif policy in ("mix", "fresh"):
        s, m = _g.mixed_moments(sizes, est, f, fresh=policy == "fresh")
        where = _g.stationary(s, m)
        tail = (f"; the chain settles at variance ratio {where[0]:.4g} and mean error {where[1] * tr0:.4g}"
                if where else "")
        about = (f"exact linear recursion in expectation with {f:g} of each set real "
                 f"({'new draws' if policy == 'fresh' else 'a fresh subset of generation 0 real set'}){tail}.")
        out["variance_ratio"] = _curve("exact", "E[tr Sigma_g / tr Sigma0]: " + about, mean=s)
        out["mean_error"] = _curve("exact", "E[|mu_g - mu0|^2]: " + about, mean=m * tr0)
        notes.append(f"quantiles under {policy}: only the expectations are known in closed form.")
    elif policy == "accumulate_subsample":
        s, m = _g.subsample_moments(sizes, est)
        about = ("exact recursion: a subsample of the pool has the pool's mean plus a finite-population error and "
                 "the pool's variance in expectation, and the pool's moments are fixed combinations of earlier "
                 "fits' (O(G^2); Gerstgrasser et al. 2024 study this setting by simulation).")
        out["variance_ratio"] = _curve("exact", "E[tr Sigma_g / tr Sigma0]: " + about, mean=s)
        out["mean_error"] = _curve("exact", "E[|mu_g - mu0|^2]: " + about, mean=m * tr0)
        notes.append("quantiles under accumulate_subsample: only the expectations are known in closed form.")
    else:
        notes.append(f"policy {policy}: no closed form is provided for the Gaussian chain under it.")
        return out, notes
    if "w2" not in out:
        notes.append(f"w2: E[w2] has no closed form under {policy}.")
    if "kl" not in out and policy != "replace":
        notes.append(f"kl, log_det_ratio, p_collapsed: no closed form under {policy}.")
    return out, notes


def _schedule_regime(spec: Any, sizes: np.ndarray) -> dict[str, Any]:
    """Partial sums of 1/M_g and whether the schedule's series converges: E[w2^2] of the unbiased chain stays
    bounded exactly when it does (and the mle chain's variance then keeps a positive share)."""
    ts = spec.train_size
    kind = getattr(ts, "kind", "list" if isinstance(ts, list) else "constant")
    if kind == "constant" or (kind == "linear"):
        converges: bool | None = False  # constant or harmonic: diverges
    elif kind == "power":
        converges = ts.p > 1
    else:
        converges = None  # a finite list says nothing about the limit
    verdict = {True: "converges (the sizes grow faster than g): the expected W2 stays bounded",
               False: "diverges: the unbiased chain's expected W2 grows without bound and the variance collapses",
               None: "an explicit list: finite, so nothing can be said about the limit"}[converges]
    return _curve("exact", f"partial sums of 1 / M_g; for this schedule ({kind}) the series {verdict}.",
                  mean=np.cumsum(1.0 / sizes.astype(float)), converges=converges)


# -- the categorical (Wright-Fisher) chain --------------------------------------------------------
def _categorical(spec: Any) -> tuple[Curves, list[str]]:
    from ..data import build_truth
    from ..metrics.discrete import tail_set

    if spec.model.smoothing > 0:
        return {}, [f"No closed form is provided for a categorical model with smoothing {spec.model.smoothing:g}: "
                    "the chain has no absorbing state (every category keeps a positive probability) and its "
                    "stationary law is not known in closed form."]
    q = build_truth(spec.data).probs_
    sizes = spec.sizes()
    policy, _ = _effective_policy(spec)
    tail = tail_set(q)
    out: Curves = {"tail_mass": _curve("exact", (
        "each fitted probability is a martingale under every policy (each set's expected frequencies are the "
        "current fit's, the real part's are the original's), so E[tail mass] is the original tail mass."),
        mean=np.full(len(sizes), q[tail].sum()))}
    notes: list[str] = []
    if policy != "replace":
        notes.append(f"support size, Gini-Simpson, p_lost_tail, p_collapsed: the Wright-Fisher results assume "
                     f"replace; policy {policy} mixes in other sets.")
        return out, notes
    out["gini_simpson"] = _curve("exact", (
        "E[1 - sum p_g^2] = (1 - sum q^2) prod_{j<=g} (1 - 1/M_j): the Wright-Fisher heterozygosity decay "
        "(Ewens 2004, sec. 1.5)."), mean=(1 - np.sum(q**2)) * np.cumprod(1 - 1 / sizes.astype(float)))
    if sizes.max() <= _wf.EXACT_MAX_SIZE:
        lost, fixed = _wf.absorption_marginals(q, sizes)
        out["support_size"] = _curve("exact", (
            "E[support size] = sum_k (1 - P(category k lost by g)); each category against the rest is a "
            "two-category Wright-Fisher chain on counts 0..M, solved by its transition matrix."),
            mean=(1 - lost).sum(axis=1))
        if tail.any():
            out["p_lost_tail"] = _curve("exact", (
                "the expected share of the tail categories (the rarest 10% of the mass) lost by generation g, from "
                "the same transition matrices."), mean=lost[:, tail].mean(axis=1))
        out["p_collapsed"] = _curve("exact", (
            "P(one category left, the fit a delta) by generation g = sum_k P(category k holds all M_g examples), "
            "exact for any number of categories since only one can; it is the distribution function of the "
            "absorption time."), mean=fixed.sum(axis=1), metric="support_size", below=1.5)
    else:
        notes.append(f"support_size, p_lost_tail, p_collapsed: a training set of {sizes.max()} is above the "
                     f"{_wf.EXACT_MAX_SIZE} the exact transition matrices are computed for.")
    if np.all(sizes == sizes[0]):
        M = int(sizes[0])
        approx = _wf.littler_absorption_time(q, M) - 1.0  # steps to generations: generation 0 is one step
        exact = _wf.expected_absorption_steps(q, M) if M <= EXACT_ABSORPTION_SIZE else None
        if exact is not None:
            exact -= 1.0
            out["absorption_time"] = _curve("exact", (
                f"expected generation at which one category is left: {exact:.4g}, exact (the sum of "
                f"P(not yet absorbed) from the transition matrices); the diffusion approximation "
                f"-2M sum_k (1 - q_k) ln(1 - q_k) (Littler 1975) gives {approx:.4g}, "
                f"{100 * (approx / exact - 1):+.1f}%."), mean=np.full(len(sizes), exact), approximation=approx)
        else:
            out["absorption_time"] = _curve("approximation", (
                f"expected generation at which one category is left: about {approx:.4g} by the diffusion "
                "approximation -2M sum_k (1 - q_k) ln(1 - q_k) (Littler 1975); within a few percent at M = 100 "
                f"and below 0.5% from M = 1000 (exact only up to M = {EXACT_ABSORPTION_SIZE})."),
                mean=np.full(len(sizes), approx))
    return out, notes
