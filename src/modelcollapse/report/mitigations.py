"""How much real data, or how good a detector, keeps a metric near generation 0: the study report's
mitigations section, driven by ``report.mitigations`` in a study.

A study that crosses families (named cells, or a grid/zip key) with mitigations (a grid key, best
labelled: ``grid: {policy: {replace: {kind: replace}, fresh-0.1: {...}}}``) writes::

    report:
      mitigations:
        family: variant            # the axis naming the family: variant (the named cells) or a grid/zip key
        mitigation: policy         # the axis naming the mitigation (default: the first other axis)
        metric: {gaussian: variance_ratio, discrete: tail_mass}   # or one name for every family
        within: 0.1                # "within 10% of generation 0"
        generation: -1             # G: -1 the family's last generation; or {family: G}
        curves:                    # each: a parameter, and the settings that vary it
          real data:
            x: policy.real_fraction          # a dotted key of the cells' specs
            where: {policy.kind: fresh}      # the settings on the curve (a value or a list of values)
            points: {replace: 0}             # more points: mitigation -> x
            better: higher                   # more helps: the answer is the least x that is enough
            say: "at least {x} fresh real data per generation"
            noun: real fractions
        mention: [replace, accumulate]       # mitigations named at the end of each sentence

For each family and setting the *relative change* is median(metric at G) / median(metric at 0) - 1 over
the setting's replicates and seeds, with a 95% percentile-bootstrap interval (replicates resampled, each
keeping its pair of generations). A setting is *enough* when that change is within ``within`` either
way. A curve's answer is the least demanding tested x such that it and every more demanding tested x
are enough ("at least 5%" claims every tested fraction from 5% up), or none.

The section draws the mitigations of each family ranked by the size of the change, the curves with the
band, a table of every value, and says the answer in one sentence per family; the sentences also head
the study report and are written to ``tables/mitigations.json``. :func:`check_config` validates the
mapping against a study's cells before anything runs (``modelcollapse show``, ``sweep``).
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

KEYS = ("family", "mitigation", "metric", "within", "generation", "curves", "mention")
CURVE_KEYS = ("x", "where", "points", "better", "say", "noun")
OUTPUT = Path("tables") / "mitigations.json"
BOOTSTRAP = 1000
_MISSING = object()


# -- the configuration ---------------------------------------------------------------------------
@dataclass
class Curve:
    name: str
    x: str | None
    where: dict[str, list[Any]]
    points: dict[str, float]
    better: str  # "higher" or "lower"
    say: str
    noun: str


@dataclass
class Config:
    family: str | None
    mitigation: str | None
    metric: str | dict[str, str]
    within: float
    generation: int | dict[str, int]
    curves: list[Curve] = field(default_factory=list)
    mention: list[str] | None = None

    def metric_of(self, family: str) -> str:
        return self.metric if isinstance(self.metric, str) else self.metric[family]

    def generation_of(self, family: str) -> int:
        return self.generation if isinstance(self.generation, int) else self.generation.get(family, -1)


def _suggest(name: str, known: tuple[str, ...] | list[str]) -> str:
    from ..registry import suggest

    return suggest(str(name), list(known))


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def parse_config(raw: Any) -> tuple[Config | None, list[str]]:
    """The mapping's structure checked on its own (what the cells do not decide)."""
    where = "report.mitigations"
    if not isinstance(raw, dict):
        return None, [f"{where}: must be a mapping (metric, within, generation, curves, ...), got {raw!r}"]
    problems = [f"{where}: unknown key {k!r}{_suggest(k, KEYS)}" for k in raw if k not in KEYS]
    family, mitigation = raw.get("family"), raw.get("mitigation")
    for key, value in (("family", family), ("mitigation", mitigation)):
        if value is not None and not isinstance(value, str):
            problems.append(f"{where}.{key}: must be an axis name (variant, or a grid or zip key), got {value!r}")
    metric = raw.get("metric")
    if metric is None:
        problems.append(f"{where}.metric: missing (one metric name, or a mapping of family: metric)")
    elif isinstance(metric, dict):
        if not metric:
            problems.append(f"{where}.metric: empty (give each family its metric)")
        problems += [f"{where}.metric.{k}: must be a metric name, got {v!r}" for k, v in metric.items()
                     if not isinstance(v, str)]
        metric = {str(k): v for k, v in metric.items()}
    elif not isinstance(metric, str):
        problems.append(f"{where}.metric: must be a metric name or a mapping of family: metric, got {metric!r}")
    within = raw.get("within", 0.1)
    if not _is_number(within) or within <= 0:
        problems.append(f"{where}.within: must be a positive number (0.1: within 10% of generation 0), got {within!r}")
    generation = raw.get("generation", -1)
    if isinstance(generation, dict):
        problems += [f"{where}.generation.{k}: must be an integer (-1: the last generation), got {v!r}"
                     for k, v in generation.items() if not _is_int(v)]
        generation = {str(k): v for k, v in generation.items()}
    elif not _is_int(generation):
        problems.append(f"{where}.generation: must be an integer (-1: the last generation) or a mapping of "
                        f"family: generation, got {generation!r}")
    curves = []
    raw_curves = raw.get("curves") or {}
    if not isinstance(raw_curves, dict):
        problems.append(f"{where}.curves: must be a mapping of name: {{x, where, points, better, say}}, "
                        f"got {raw_curves!r}")
        raw_curves = {}
    for name, spec in raw_curves.items():
        curve, found = _parse_curve(f"{where}.curves.{name}", str(name), spec)
        problems += found
        if curve is not None:
            curves.append(curve)
    mention = raw.get("mention")
    if mention is not None and (not isinstance(mention, list) or not all(isinstance(m, (str, int, float))
                                                                         for m in mention)):
        problems.append(f"{where}.mention: must be a list of mitigations, got {mention!r}")
        mention = None
    if problems:
        return None, problems
    return Config(family, mitigation, metric, float(within), generation, curves,
                  None if mention is None else [_text(m) for m in mention]), []


def _parse_curve(where: str, name: str, spec: Any) -> tuple[Curve | None, list[str]]:
    if not isinstance(spec, dict):
        return None, [f"{where}: must be a mapping with x (a spec key), where, points, better, got {spec!r}"]
    problems = [f"{where}: unknown key {k!r}{_suggest(k, CURVE_KEYS)}" for k in spec if k not in CURVE_KEYS]
    x = spec.get("x")
    if x is not None and not isinstance(x, str):
        problems.append(f"{where}.x: must be a dotted spec key (policy.real_fraction), got {x!r}")
    filters = spec.get("where") or {}
    if not isinstance(filters, dict):
        problems.append(f"{where}.where: must be a mapping of dotted spec key: value (or list of values), "
                        f"got {filters!r}")
        filters = {}
    points = spec.get("points") or {}
    if not isinstance(points, dict):
        problems.append(f"{where}.points: must be a mapping of mitigation: x, got {points!r}")
        points = {}
    problems += [f"{where}.points.{k}: x must be a number, got {v!r}" for k, v in points.items() if not _is_number(v)]
    if x is None and not points:
        problems.append(f"{where}: give x (a spec key read from the settings that match where) or points "
                        "(mitigation: x), or both")
    better = spec.get("better")
    if better not in ("higher", "lower"):
        problems.append(f"{where}.better: must be higher (more x helps, e.g. real data) or lower (less x helps, "
                        f"e.g. a detector's error), got {better!r}")
    say = spec.get("say", f"{name} {'at least' if better == 'higher' else 'at most'} {{x}}")
    if not isinstance(say, str) or "{x}" not in say:
        problems.append(f"{where}.say: must be text with {{x}} where the answer goes, got {say!r}")
    noun = spec.get("noun", name)
    if not isinstance(noun, str):
        problems.append(f"{where}.noun: must be text (e.g. real fractions), got {noun!r}")
    if problems:
        return None, problems
    return Curve(name, x, {str(k): (v if isinstance(v, list) else [v]) for k, v in filters.items()},
                 {_text(k): float(v) for k, v in points.items()}, better, say, noun), []


# -- settings: family, mitigation and spec of each ----------------------------------------------------
@dataclass
class Setting:
    name: str
    family: str
    mitigation: str
    spec: dict
    generations: int


def _text(value: Any) -> str:
    """An axis value as text (as the study report writes it)."""
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        return " ".join(_text(v) for v in value.values())
    return json.dumps(value, separators=(",", ":"))


def spec_value(spec: dict, dotted: str) -> Any:
    """``policy.detector.false_negative_rate`` of a dumped spec, or a marker when it has no such key."""
    node: Any = spec
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return _MISSING
        node = node[part]
    return node


def _axes(entries: list[dict]) -> list[str]:
    axes = list(dict.fromkeys(k for e in entries for k in e["values"]))
    if any(e.get("variant") is not None for e in entries):
        axes.insert(0, "variant")
    return axes


def resolve_axes(config: Config, entries: list[dict]) -> tuple[str | None, str | None, list[str]]:
    """(family axis, mitigation axis, problems): ``variant`` or a grid/zip key each, defaults filled in."""
    axes = _axes(entries)
    problems = []
    family = config.family or (axes[0] if axes else None)
    mitigation = config.mitigation or next((a for a in axes if a != family), None)
    for key, axis in (("family", family), ("mitigation", mitigation)):
        if axis is None or axis not in axes:
            problems.append(f"report.mitigations.{key}: {axis!r} is not an axis of this study (axes: "
                            f"{', '.join(axes) or 'none'}; variant is the named cells)")
    if family is not None and family == mitigation:
        problems.append(f"report.mitigations: family and mitigation are both {family!r}; they must be two axes")
    return family, mitigation, problems


def settings_of(entries: list[dict], family: str, mitigation: str) -> list[Setting]:
    """One :class:`Setting` per setting of the study (its first cell's spec), in study order.

    ``entries``: study.json's cells, or the same read from :class:`~modelcollapse.study.spec.Cell` objects."""
    out: dict[str, Setting] = {}
    for e in entries:
        if e["setting"] in out:
            continue
        values = dict(e["values"])
        values["variant"] = e.get("variant")
        spec = e.get("spec") or {}
        out[e["setting"]] = Setting(e["setting"], _text(values.get(family)), _text(values.get(mitigation)), spec,
                                    int(spec.get("generations", 0)))
    return list(out.values())


def _families(settings: list[Setting]) -> dict[str, list[Setting]]:
    out: dict[str, list[Setting]] = {}
    for s in settings:
        out.setdefault(s.family, []).append(s)
    return out


def curve_points(curve: Curve, members: list[Setting]) -> tuple[list[tuple[float, Setting]], list[str]]:
    """(x, setting) of one family's settings on a curve, sorted by x, and problems."""
    problems = []
    found: dict[float, Setting] = {}
    by_mitigation = {s.mitigation: s for s in members}
    candidates: list[tuple[Any, Setting]] = []
    if curve.x is not None:
        for s in members:
            if all(spec_value(s.spec, k) in vs for k, vs in curve.where.items()):
                candidates.append((spec_value(s.spec, curve.x), s))
    for label, x in curve.points.items():
        if label in by_mitigation:
            candidates.append((x, by_mitigation[label]))
    for x, s in candidates:
        if x is _MISSING or not _is_number(x):
            problems.append(f"{curve.x} of {s.name}: {'missing' if x is _MISSING else repr(x)} (a curve's x must "
                            "be a number in every setting it matches: narrow where)")
            continue
        x = float(x)
        if x in found and found[x].name != s.name:
            problems.append(f"{found[x].name} and {s.name} are both at x={x:g} (narrow where, or drop a point)")
        found.setdefault(x, s)
    return sorted(found.items(), key=lambda p: p[0]), problems


def check_config(raw: Any, cells: list[Any]) -> list[str]:
    """Problems of ``report.mitigations`` for a study's cells (:class:`~modelcollapse.study.spec.Cell`); none: []."""
    config, problems = parse_config(raw)
    if config is None:
        return problems
    entries = [{"setting": c.setting, "variant": c.variant, "values": c.values,
                "spec": c.spec.model_dump(mode="json")} for c in cells]
    return validate(config, entries)


def validate(config: Config, entries: list[dict]) -> list[str]:
    """Problems of a parsed configuration against the study's cells (as study.json entries)."""
    family_axis, mitigation_axis, problems = resolve_axes(config, entries)
    if problems:
        return problems
    where = "report.mitigations"
    settings = settings_of(entries, family_axis, mitigation_axis)
    families = _families(settings)
    mitigations = list(dict.fromkeys(s.mitigation for s in settings))
    # A mapping may name families the study leaves out (a preset run with fewer): only a missing one is wrong.
    if isinstance(config.metric, dict):
        missing = [f for f in families if f not in config.metric]
        if missing:
            problems.append(f"{where}.metric: no metric for family {', '.join(missing)} (families, by {family_axis}: "
                            f"{', '.join(families)}; given: {', '.join(config.metric)})")
    for fam, members in families.items():
        seen = {}
        for s in members:
            if s.mitigation in seen:
                problems.append(f"{where}: family {fam} has two settings for mitigation {s.mitigation!r} "
                                f"({seen[s.mitigation]}, {s.name}); the family and mitigation axes must name every "
                                "setting (leave seeds aside)")
            seen[s.mitigation] = s.name
        metric = config.metric if isinstance(config.metric, str) else config.metric.get(fam)
        if metric is not None:
            lacking = [s.name for s in members if metric not in (s.spec.get("metrics") or [])]
            if lacking:
                have = ", ".join(members[0].spec.get("metrics") or []) or "none"
                problems.append(f"{where}.metric: {metric!r} is not computed by {lacking[0]}"
                                f"{f' and {len(lacking) - 1} more' if len(lacking) > 1 else ''} of family {fam} "
                                f"(its metrics: {have})")
        g = config.generation_of(fam)
        shortest = min(s.generations for s in members)
        if not -shortest - 1 <= g <= shortest or g == 0 or g == -shortest - 1:
            problems.append(f"{where}.generation: {g} is not a generation after 0 of every setting of family {fam} "
                            f"(1-{shortest}, or -1 for the last)")
    for name in config.mention or []:
        if name not in mitigations:
            problems.append(f"{where}.mention: {name!r} is not a mitigation{_suggest(name, mitigations)} "
                            f"(by {mitigation_axis}: {', '.join(mitigations)})")
    for curve in config.curves:
        at = f"{where}.curves.{curve.name}"
        for label in curve.points:
            if label not in mitigations:
                problems.append(f"{at}.points: {label!r} is not a mitigation{_suggest(label, mitigations)} "
                                f"(by {mitigation_axis}: {', '.join(mitigations)})")
        for key in [*([curve.x] if curve.x else []), *curve.where]:
            if all(spec_value(s.spec, key) is _MISSING for s in settings):
                problems.append(f"{at}: {key!r} is not a key of any cell's spec")
        if any(p.startswith(at) for p in problems):
            continue
        for fam, members in families.items():
            points, found = curve_points(curve, members)
            problems += [f"{at}: family {fam}: {p}" for p in found]
            if not points and not found:
                problems.append(f"{at}: no setting of family {fam} is on this curve (where {curve.where} matches "
                                "none, and no points name one of its mitigations)")
    return problems


# -- the numbers ---------------------------------------------------------------------------------
def relative_change(g0: np.ndarray, gG: np.ndarray, seed: str, resamples: int = BOOTSTRAP) -> dict[str, float]:
    """median(gG) / median(g0) - 1 over paired replicates (NaN pairs dropped), with a 95% percentile
    bootstrap interval (pairs resampled; seeded by ``seed``)."""
    g0, gG = np.asarray(g0, dtype=float), np.asarray(gG, dtype=float)
    ok = np.isfinite(g0) & np.isfinite(gG)
    g0, gG = g0[ok], gG[ok]
    out = {"change": math.nan, "ci_low": math.nan, "ci_high": math.nan, "n": int(ok.sum()),
           "at_0": math.nan, "at_G": math.nan}
    if not len(g0):
        return out
    m0, mG = float(np.median(g0)), float(np.median(gG))
    out.update(at_0=m0, at_G=mG)
    if m0 == 0:
        return out
    out["change"] = mG / m0 - 1
    rng = np.random.default_rng(int(hashlib.sha256(seed.encode()).hexdigest()[:16], 16))
    idx = rng.integers(len(g0), size=(resamples, len(g0)))
    with np.errstate(divide="ignore", invalid="ignore"):
        boot = np.median(gG[idx], axis=1) / np.median(g0[idx], axis=1) - 1
    boot = boot[np.isfinite(boot)]
    if len(boot):
        out["ci_low"], out["ci_high"] = (float(v) for v in np.percentile(boot, [2.5, 97.5]))
    return out


def enough(points: list[tuple[float, float]], better: str, within: float) -> float | None:
    """The least demanding tested x such that it and every more demanding one keep |change| <= within;
    None when the most demanding one does not. ``points``: (x, change) pairs."""
    order = sorted(points, key=lambda p: p[0], reverse=(better == "higher"))  # most demanding first
    answer = None
    for x, change in order:
        if not (np.isfinite(change) and abs(change) <= within):
            break
        answer = x
    return answer


def _pct(v: float) -> str:
    """A fraction as a percentage: 0.034 -> 3.4%, 0.38 -> 38%."""
    if not np.isfinite(v):
        return "–"
    p = abs(v) * 100
    return f"{p:.2g}%" if p < 9.95 else f"{p:.0f}%"


def _signed(v: float) -> str:
    """+3.4%, −38%; – for NaN."""
    return "–" if not np.isfinite(v) else f"{'−' if v < 0 else '+'}{_pct(v)}"


def _x(v: float, percent: bool) -> str:
    return _pct(v) if percent else f"{v:g}"


def sentence(family: str, result: dict, config: Config) -> str:
    """One family's answer in words (``result``: that family's entry of :func:`analyse`)."""
    metric, g, within = result["metric"], result["generation"], config.within
    head = f"{family}: {metric}"
    said, missed = [], []
    for curve in config.curves:
        c = result["curves"].get(curve.name)
        if c is None or not c["points"]:
            continue
        xs = [p["x"] for p in c["points"]]
        percent = all(0 <= x <= 1 for x in xs)
        if c["enough"] is None:
            edge = max(xs) if curve.better == "higher" else min(xs)
            missed.append(f"none of the tested {curve.noun} {'up' if curve.better == 'higher' else 'down'} to "
                          f"{_x(edge, percent)} is enough")
        else:
            demanding = sorted(xs, reverse=curve.better == "higher")  # the most demanding first
            note = ""
            if len(xs) > 1 and c["enough"] == demanding[-1]:
                note = " (every tested value)"
            elif len(xs) > 1 and c["enough"] == demanding[0]:
                note = f" (the most demanding tested value; {_x(demanding[1], percent)} is not enough)"
            said.append(curve.say.replace("{x}", _x(c["enough"], percent)) + note)
    band = f"within {_pct(within)} of generation 0 after {g} generations"
    if said:
        text = f"{head} stays {band} with {', or with '.join(said)}"
        if missed:
            text += "; " + "; ".join(missed)
    elif missed:
        text = f"{head} does not stay {band} in any tested setting on the curves: " + "; ".join(missed)
    else:
        ok = [m for m, r in result["mitigations"].items() if r["within"]]
        text = (f"{head} stays {band} with {', '.join(ok)}" if ok
                else f"{head} does not stay {band} with any tested mitigation")
    named = [m for m in result["mention"] if m in result["mitigations"]]
    drifts = []
    for m in named:
        change = result["mitigations"][m]["change"]
        if not np.isfinite(change):
            drifts.append(f"{m}: no value")
        else:
            way = "" if round(abs(change) * 100, 1) == 0 else (" down" if change < 0 else " up")
            drifts.append(f"{m} drifts {_pct(change)}{way}")
    return text + ("; " + ", ".join(drifts) if drifts else "") + "."


def analyse(path: str | Path, index: dict, definition: dict) -> dict | None:
    """The section's numbers and sentences for a study directory, or None when it has no
    ``report.mitigations``. Problems (an invalid mapping, missing results) are listed under ``notes``."""
    report = definition.get("report") if isinstance(definition, dict) else None
    raw = report.get("mitigations") if isinstance(report, dict) else None
    if raw is None:
        return None
    config, problems = parse_config(raw)
    if config is None:
        return {"notes": problems, "families": {}, "config": None}
    entries = index["cells"]
    problems = validate(config, entries)
    if problems:
        return {"notes": problems, "families": {}, "config": config}
    family_axis, mitigation_axis, _ = resolve_axes(config, entries)
    settings = settings_of(entries, family_axis, mitigation_axis)
    families = _families(settings)
    gens = {f: (config.generation_of(f) % (min(s.generations for s in m) + 1)) for f, m in families.items()}
    metrics = sorted({config.metric_of(f) for f in families})
    from ..study.results import load_results

    notes: list[str] = []
    try:
        rows = load_results(path, metrics=metrics, generations=sorted({0, *gens.values()}))
    except Exception as exc:  # noqa: BLE001 - no results yet, or a damaged table: the section says so
        return {"notes": [f"no results to read: {type(exc).__name__}: {exc}"], "families": {}, "config": config}
    out: dict[str, Any] = {"within": config.within, "family_axis": family_axis, "mitigation_axis": mitigation_axis,
                           "families": {}, "notes": notes, "config": config}
    for fam, members in families.items():
        metric, g = config.metric_of(fam), gens[fam]
        result: dict[str, Any] = {"metric": metric, "generation": g, "mitigations": {}, "curves": {}}
        for s in members:
            part = rows[rows["setting"] == s.name] if len(rows) else rows
            if metric not in part.columns or not len(part):
                result["mitigations"][s.mitigation] = {**relative_change([], [], s.name), "setting": s.name,
                                                       "within": False}
                continue
            wide = part.pivot(index=["cell", "replicate"], columns="generation", values=metric)
            a = wide[0].to_numpy(dtype=float) if 0 in wide.columns else np.array([])
            b = wide[g].to_numpy(dtype=float) if g in wide.columns else np.full(len(a), np.nan)
            r = relative_change(a, b, s.name)
            r.update(setting=s.name, within=bool(np.isfinite(r["change"]) and abs(r["change"]) <= config.within))
            result["mitigations"][s.mitigation] = r
        missing = [m for m, r in result["mitigations"].items() if not np.isfinite(r["change"])]
        if missing:
            notes.append(f"{fam}: no relative change of {metric} at generation {g} for {', '.join(missing)} "
                         "(no results, every replicate stopped, or the metric is 0 at generation 0).")
        for curve in config.curves:
            points, _ = curve_points(curve, members)
            pts = [{"x": x, "mitigation": s.mitigation, **{k: result["mitigations"][s.mitigation][k]
                                                            for k in ("change", "ci_low", "ci_high", "n")}}
                   for x, s in points]
            result["curves"][curve.name] = {"better": curve.better, "points": pts,
                                            "enough": enough([(p["x"], p["change"]) for p in pts], curve.better,
                                                             config.within)}
        finite = {m: r["change"] for m, r in result["mitigations"].items() if np.isfinite(r["change"])}
        if config.mention is not None:
            result["mention"] = list(config.mention)
        else:  # the first mitigation (the baseline, usually replace) and the one that moves the metric least
            first = members[0].mitigation
            best = min(finite, key=lambda m: abs(finite[m])) if finite else None
            result["mention"] = list(dict.fromkeys(m for m in (first, best) if m is not None))
        result["sentence"] = sentence(fam, result, config)
        out["families"][fam] = result
    return out


def write_json(path: str | Path, result: dict) -> Path:
    """``tables/mitigations.json``: the sentences and every number behind them, for scripts."""
    from ..store import atomic_write

    target = Path(path) / OUTPUT
    target.parent.mkdir(parents=True, exist_ok=True)
    clean = {k: v for k, v in result.items() if k != "config"}
    text = json.dumps(_finite(clean), indent=1)
    atomic_write(target, (text + "\n").encode())
    return target


def _finite(value: Any) -> Any:
    """NaN as null: the JSON stays standard."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


# -- the figures ----------------------------------------------------------------------------------
WITHIN_COLOUR, OUTSIDE_COLOUR = "#2a9d8f", "#9aa5b1"
FLOOR = 0.1  # %: where a log axis starts (a change of 0 is drawn there)


def _abs_interval(change: float, lo: float, hi: float) -> tuple[float, float]:
    """The interval of |change| from that of change."""
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return abs(change), abs(change)
    if lo <= 0 <= hi:
        return 0.0, max(-lo, hi)
    return min(abs(lo), abs(hi)), max(abs(lo), abs(hi))


def _log_wanted(values: list[float]) -> bool:
    pos = [v for v in values if np.isfinite(v) and v > 0]
    return len(pos) > 1 and max(pos) / max(min(pos), 1e-3) > 50


def ranking_figure(result: dict) -> Any:
    """One panel per family: every mitigation's |relative change| at G, ranked, with its interval and the band."""
    from matplotlib.figure import Figure

    families = result["families"]
    n = len(families)
    ncols = 1 if n == 1 else 2
    nrows = -(-n // ncols)
    tallest = max(len(f["mitigations"]) for f in families.values())
    fig = Figure(figsize=(9, nrows * (0.9 + 0.2 * tallest)), layout="constrained")
    within = result["within"] * 100
    for i, (fam, res) in enumerate(families.items()):
        ax = fig.add_subplot(nrows, ncols, i + 1)
        items = sorted(res["mitigations"].items(), key=lambda kv: -abs(kv[1]["change"])
                       if np.isfinite(kv[1]["change"]) else -np.inf)
        labels = [m for m, _ in items]
        size = np.array([abs(r["change"]) * 100 if np.isfinite(r["change"]) else np.nan for _, r in items])
        bounds = np.array([_abs_interval(r["change"], r["ci_low"], r["ci_high"]) for _, r in items]) * 100
        colours = [WITHIN_COLOUR if r["within"] else OUTSIDE_COLOUR for _, r in items]
        y = np.arange(len(items))
        log = _log_wanted(list(size))
        floor = FLOOR if log else 0.0
        shown = np.where(np.isfinite(size), np.maximum(size, floor), floor)
        ax.barh(y, shown - floor, left=floor, color=colours, height=0.7)
        err = np.vstack([np.clip(shown - np.maximum(bounds[:, 0], floor), 0, None),
                         np.clip(bounds[:, 1] - shown, 0, None)])
        ok = np.isfinite(size) & np.isfinite(bounds).all(axis=1)
        ax.errorbar(shown[ok], y[ok], xerr=err[:, ok], fmt="none", ecolor="#333", elinewidth=0.8, capsize=2)
        ax.axvline(within, color="#c62828", ls="--", lw=1)
        if log:
            ax.set_xscale("log")
        ax.set_yticks(y, labels, fontsize=7)
        ax.set_xlabel(f"|change of {res['metric']}| at generation {res['generation']} (%)", fontsize=8)
        ax.set_title(fam, loc="left", fontsize=10)
        ax.grid(axis="y", visible=False)
    return fig


def curves_figure(result: dict, curves: list[Curve]) -> Any:
    """One panel per curve: |relative change| against the curve's x, one line per family, the band shaded."""
    from matplotlib import colormaps
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9, 3.4), layout="constrained")
    within = result["within"] * 100
    families = list(result["families"])
    cmap = colormaps["tab10"]
    for i, curve in enumerate(curves):
        ax = fig.add_subplot(1, len(curves), i + 1)
        values: list[float] = []
        lines = []
        for j, fam in enumerate(families):
            pts = result["families"][fam]["curves"].get(curve.name, {}).get("points", [])
            if not pts:
                continue
            xs = np.array([p["x"] for p in pts])
            ys = np.array([abs(p["change"]) * 100 if np.isfinite(p["change"]) else np.nan for p in pts])
            iv = np.array([_abs_interval(p["change"], p["ci_low"], p["ci_high"]) for p in pts]) * 100
            percent = all(0 <= x <= 1 for x in xs)
            lines.append((xs * 100 if percent else xs, ys, iv, cmap(j % 10), fam))
            values += list(ys) + list(iv.ravel())
        log = _log_wanted(values)
        floor = FLOOR if log else 0.0  # a change of 0 on a log axis: drawn at the floor
        for xs, ys, iv, colour, fam in lines:
            shown = np.maximum(ys, floor)
            res = result["families"][fam]
            ax.plot(xs, shown, marker="o", ms=4, lw=1.5, color=colour,
                    label=f"{fam} ({res['metric']}, g={res['generation']})")
            err = np.vstack([np.clip(shown - np.maximum(iv[:, 0], floor), 0, None), np.clip(iv[:, 1] - shown, 0, None)])
            ok = np.isfinite(shown) & np.isfinite(iv).all(axis=1)
            ax.errorbar(xs[ok], shown[ok], yerr=err[:, ok], fmt="none", ecolor=colour, elinewidth=0.8, capsize=2,
                        alpha=0.7)
        if log:
            ax.set_yscale("log")
            ax.set_ylim(bottom=FLOOR / 1.5)
        ax.axhspan(ax.get_ylim()[0] if log else 0, within, color=WITHIN_COLOUR, alpha=0.12, lw=0)
        ax.axhline(within, color="#c62828", ls="--", lw=1)
        ax.set_xlabel(f"{curve.name}" + (" (%)" if all(0 <= p["x"] <= 1 for f in families for p in
                                                      result["families"][f]["curves"].get(curve.name, {})
                                                      .get("points", [])) else ""))
        ax.set_ylabel("|change from generation 0| (%)")
        ax.set_title(curve.name, loc="left", fontsize=10)
        if i == 0:
            ax.legend(fontsize=7, loc="best")
    return fig


# -- the page ------------------------------------------------------------------------------------
def lead(result: dict | None, page: Any) -> None:
    """The sentences, at the top of the study report."""
    from .page import esc

    if not result or not result.get("families"):
        return
    items = "".join(f"<li>{esc(r['sentence'])}</li>" for r in result["families"].values())
    page.add(f"<div class='banner unknown'><b>How much is needed</b> (see <a href='#mitigations'>Mitigations</a>)"
             f"<ul>{items}</ul></div>")


def section(result: dict | None, page: Any) -> None:
    """The mitigations section: ranking, curves, sentences and the table of every value."""
    from . import figures
    from .page import esc, table

    if result is None:
        return
    page.add("<h2 id='mitigations'>Mitigations</h2>")
    if result.get("notes"):
        page.add("".join(f"<p>{esc(n)}</p>" for n in result["notes"]))
    if not result.get("families"):
        return
    within = _pct(result["within"])
    page.add("<ul>" + "".join(f"<li>{esc(r['sentence'])}</li>" for r in result["families"].values()) + "</ul>")
    with figures.style():
        page.figure("mitigations_ranking", ranking_figure(result), esc(
            f"Each mitigation, per family, ranked by how far it moves the family's metric from generation 0: "
            f"|median at G / median at 0 - 1| over replicates and seeds, with the 95% bootstrap interval "
            f"(replicates resampled). Green: within {within} (dashed line)."))
        curves = [c for c in result["config"].curves]
        if curves:
            page.figure("mitigations_curves", curves_figure(result, curves), esc(
                f"How much is needed: the change from generation 0 against each curve's parameter, one line per "
                f"family (its metric and generation G), with the 95% bootstrap interval; shaded: within {within}."))
    families = list(result["families"])
    mitigations = list(dict.fromkeys(m for f in families for m in result["families"][f]["mitigations"]))
    rows = []
    for m in mitigations:
        cells = []
        for f in families:
            r = result["families"][f]["mitigations"].get(m)
            if r is None:
                cells.append("")
                continue
            text = (f"{_signed(r['change'])} [{_signed(r['ci_low'])}, {_signed(r['ci_high'])}]"
                    if np.isfinite(r["change"]) else "–")
            cells.append(f"<b>{esc(text)}</b>" if r["within"] else esc(text))
        rows.append((esc(m), *cells))
    head = ("mitigation", *[esc(f"{f}: {result['families'][f]['metric']}, g {result['families'][f]['generation']}")
                            for f in families])
    page.add(f"<p>Change from generation 0 (%, 95% interval); bold: within {esc(within)}. Also in "
             f"<code>{esc(str(OUTPUT))}</code>.</p>" + table(rows, head))


__all__ = ["Config", "Curve", "analyse", "check_config", "enough", "parse_config", "relative_change", "sentence",
           "validate", "write_json"]
