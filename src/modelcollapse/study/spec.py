"""A study: one base spec, varied over a grid, zipped keys, named variants and seeds, expanded to cells.

A study file (YAML) or a preset that is a study::

    name: policies                      # optional: the file's stem, or the base's name
    description: "..."
    base: gaussian                      # a preset, a spec file (relative to this file) or a mapping
    set: {replicates: 50}               # dotted keys applied to every cell (a cell or grid value wins)
    grid:                               # every combination of these values
      train_size: [10, 100, 1000]
      policy.kind: [replace, accumulate]
    zip:                                # keys varied together: the i-th values form one setting
      data.means: [[[0.0]], [[1.0]]]
      model.n_components: [1, 2]
    # a grid or zip key's values may also be a mapping of label: value; the label names the value in the
    # cells' names, study.json and the tables (policy=fresh-0.1, not the whole section written out):
    #   grid: {policy: {replace: {kind: replace}, fresh-0.1: {kind: fresh, real_fraction: 0.1}}}
    cells:                              # named variants a grid cannot express: each crossed with the grid
      one-gaussian: {model.n_components: 1}
      paper: {}
    seeds: [0, 1, 2]                    # or "0-9": each setting once per seed (the spec's ``seed``)
    override: {generations: 10}         # applied last, over every other value (what --set adds)
    report: {heatmap: {metric: w2, generation: -1, x: train_size, y: policy.kind}}

Cells are (named cell) x grid x zip x seeds, in that order. A cell's spec is the base, then ``set``,
then its named cell's keys, then its grid and zip values, then ``override``. A *setting* is a cell without its
seed: results are aggregated over the replicates and seeds of a setting. Every cell is resolved
and validated before anything runs; a problem names the cell, the key and the value. Two settings whose
readable names would be the same (long values are cut to 24 characters) are refused: label the values.
``report.mitigations`` is checked against the cells too (see :mod:`modelcollapse.report.mitigations`).
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..config import ExperimentSpec, SpecError, parse_yaml, read_source, set_value, validate
from ..registry import suggest

#: Top-level keys of a study; any of grid, zip, cells or seeds makes a YAML mapping a study.
STUDY_KEYS = ("name", "description", "base", "set", "grid", "zip", "cells", "seeds", "override", "report", "errors")
VARYING = ("grid", "zip", "cells", "seeds")
MAX_CELLS = 10_000  # a typo in a range (seeds: 0-99999) should not create a hundred thousand directories


def is_study(raw: Any) -> bool:
    """Whether a parsed YAML mapping describes a study rather than one run."""
    return isinstance(raw, dict) and any(k in raw for k in VARYING) and "base" in raw


@dataclass
class Cell:
    """One run of a study: a setting (grid values, named variant) and a seed."""

    name: str  # its directory under cells/: readable values, then a short hash of its resolved spec
    setting: str  # the readable part without the seed: cells of one setting differ only by seed
    values: dict[str, Any]  # grid and zip key -> value
    variant: str | None  # the named cell, if any
    seed: int
    spec: ExperimentSpec
    hash: str


@dataclass
class Study:
    """A study as written (after command-line additions) and its cells."""

    name: str
    description: str
    definition: dict  # the study mapping, as stored in study.yaml
    axes: list[str]  # grid and zip keys, in order
    cells: list[Cell] = field(default_factory=list)
    report: dict = field(default_factory=dict)
    errors: dict | None = None

    @property
    def settings(self) -> list[str]:
        return list(dict.fromkeys(c.setting for c in self.cells))


# -- reading ------------------------------------------------------------------------------
def read_study(source: str | Path | dict) -> tuple[dict, Path | None]:
    """The raw study mapping and the folder its relative paths are read from."""
    if isinstance(source, dict):
        return copy.deepcopy(source), None
    raw = read_source(source)
    path = Path(str(source))
    return raw, (path.parent if path.is_file() else None)


def parse_values(key: str, text: str) -> list[Any]:
    """``--grid key=a,b,c`` values, each read as YAML; ``key=[[0, 1], [2, 3]]`` is a YAML list as is."""
    text = text.strip()
    if not text:
        raise SpecError([f"--grid {key}: no values (give them as {key}=a,b,c)"])
    if text.startswith("["):
        values = parse_yaml(text, f"--grid {key}")
    else:
        values = [parse_yaml(v, f"--grid {key}") for v in _split_top(text)]
    if not isinstance(values, list) or not values:
        raise SpecError([f"--grid {key}: no values (give them as {key}=a,b,c)"])
    return values


def _split_top(text: str) -> list[str]:
    """Split on commas outside brackets and braces (``a,[1, 2],b`` is three values)."""
    out, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        depth += ch in "[{"
        depth -= ch in "]}"
        if ch == "," and depth == 0:
            out.append(text[start:i])
            start = i + 1
    out.append(text[start:])
    return [v.strip() for v in out]


def parse_seeds(value: Any, where: str = "seeds") -> list[int]:
    """Seeds as a list, ``"0-9"`` (inclusive) or ``"0,1,2"``."""
    if isinstance(value, str):
        text = value.strip()
        m = re.fullmatch(r"(\d+)\s*-\s*(\d+)", text)
        if m:
            lo, hi = int(m.group(1)), int(m.group(2))
            if hi < lo:
                raise SpecError([f"{where}: range {text!r} is empty (write low-high)"])
            value = list(range(lo, hi + 1))
        else:
            value = [parse_yaml(v, where) for v in _split_top(text)]
    if isinstance(value, int) and not isinstance(value, bool):
        value = [value]
    if not isinstance(value, list) or not value:
        raise SpecError([f"{where}: must be a non-empty list of seeds, a range like 0-9 or 0,1,2; got {value!r}"])
    for s in value:
        if isinstance(s, bool) or not isinstance(s, int) or s < 0:
            raise SpecError([f"{where}: {s!r} is not a seed (a non-negative integer)"])
    if len(set(value)) != len(value):
        raise SpecError([f"{where}: seed {next(s for s in value if value.count(s) > 1)} is listed twice"])
    return list(value)


def build(source: str | Path | dict, *, grid: list[str] = (), sets: list[str] = (), seeds: str | None = None,
          name: str | None = None) -> Study:
    """Read a study (a study file or preset, or a plain spec/preset varied only by the command line),
    add ``--grid KEY=a,b``, ``--set KEY=V`` and ``--seeds``, expand and validate every cell."""
    raw, folder = read_study(source)
    if not is_study(raw):  # a plain spec or preset: the study is made on the command line
        if "base" in raw and not any(k in raw for k in VARYING):
            raise SpecError([f"{source}: a study needs at least one of grid, zip, cells or seeds"])
        raw = {"name": raw.get("name", "study"), "base": source if not isinstance(source, dict) else raw}
    definition = copy.deepcopy(raw)
    for assignment in grid:
        if "=" not in assignment:
            raise SpecError([f"--grid expects KEY=a,b,c, got {assignment!r}"])
        key, text = assignment.split("=", 1)
        definition.setdefault("grid", {})
        definition["grid"] = dict(definition["grid"] or {})
        definition["grid"][key.strip()] = parse_values(key.strip(), text)
    if sets:  # applied last, over the named cells' and the grid's values: the command line has the last word
        extra = _assignments(definition.get("override") or {})
        for assignment in sets:
            if "=" not in assignment:
                raise SpecError([f"--set expects KEY=VALUE, got {assignment!r}"])
            key, text = assignment.split("=", 1)
            extra[key.strip()] = parse_yaml(text, f"--set {key}")
        definition["override"] = extra
    if seeds is not None:
        definition["seeds"] = seeds
    if name:
        definition["name"] = name
    return expand(definition, folder)


def _assignments(value: Any) -> Any:
    """``set:`` as a mapping; a list of "KEY=VALUE" strings (as on the command line) is read like --set."""
    if not isinstance(value, list):
        return value
    out = {}
    for assignment in value:
        if not isinstance(assignment, str) or "=" not in assignment:
            raise SpecError([f"study: set: expects KEY=VALUE entries (or a mapping), got {assignment!r}"])
        key, text = assignment.split("=", 1)
        out[key.strip()] = parse_yaml(text, f"set {key}")
    return out


def _base(definition: dict, folder: Path | None) -> dict:
    base = definition.get("base")
    if base is None:
        raise SpecError(["study: base: missing (a preset name, a spec file or a spec mapping)"])
    if isinstance(base, dict):
        return copy.deepcopy(base)
    if not isinstance(base, str):
        raise SpecError([f"study: base: must be a preset name, a spec file or a mapping, got {base!r}"])
    if folder is not None and (folder / base).is_file():
        base = str(folder / base)
    raw = read_source(base)
    if is_study(raw):
        raise SpecError([f"study: base: {base!r} is itself a study; a base is one run's spec"])
    return raw


def _mapping(definition: dict, key: str) -> dict:
    value = definition.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise SpecError([f"study: {key}: must be a mapping, got {value!r}"])
    return value


def _axes(definition: dict) -> tuple[list[tuple[dict, str | None]], list[dict[str, Any]]]:
    """The named variants (overrides, name) and the grid x zip settings (key -> value)."""
    cells = _mapping(definition, "cells")
    variants: list[tuple[dict, str | None]] = []
    for cname, overrides in cells.items():
        if not re.fullmatch(r"[A-Za-z0-9_.+\-]+", str(cname)):
            raise SpecError([f"study: cells: name {cname!r} may use letters, digits and _ . + - only"])
        if overrides is None:
            overrides = {}
        if not isinstance(overrides, dict):
            raise SpecError([f"study: cells.{cname}: must be a mapping of key: value, got {overrides!r}"])
        variants.append((overrides, str(cname)))
    if "cells" in definition and not variants:
        raise SpecError(["study: cells: empty (name at least one cell, or leave cells out)"])
    variants = variants or [({}, None)]
    grid = _mapping(definition, "grid")
    if "grid" in definition and not grid:
        raise SpecError(["study: grid: empty (give at least one key with its values)"])
    grid = {key: _labelled("grid", key, values) for key, values in grid.items()}
    for key, values in grid.items():
        if not isinstance(values, list) or not values:
            raise SpecError([f"study: grid.{key}: must be a non-empty list of values (or a mapping of label: value), "
                             f"got {values!r}"])
    zipped = _mapping(definition, "zip")
    if "zip" in definition and not zipped:
        raise SpecError(["study: zip: empty (give at least one key with its values)"])
    zipped = {key: _labelled("zip", key, values) for key, values in zipped.items()}
    lengths = {k: len(v) if isinstance(v, list) else -1 for k, v in zipped.items()}
    if any(n < 1 for n in lengths.values()) or len(set(lengths.values())) > 1:
        raise SpecError([f"study: zip: every key needs a list of the same length; got "
                         f"{', '.join(f'{k}: {n if n >= 0 else repr(zipped[k])}' for k, n in lengths.items())}"])
    both = set(grid) & set(zipped)
    if both:
        raise SpecError([f"study: {sorted(both)[0]} is both in grid and in zip"])
    settings: list[dict[str, Any]] = []
    zip_rows = [dict(zip(zipped, row)) for row in zip(*zipped.values())] if zipped else [{}]
    for combo in itertools.product(*grid.values()):
        for row in zip_rows:
            settings.append({**dict(zip(grid, combo)), **row})
    return variants, settings


@dataclass(frozen=True)
class Labelled:
    """A grid or zip value given as ``label: value``: the label stands for the value in names and tables."""

    label: str
    value: Any


def _labelled(where: str, key: str, values: Any) -> Any:
    """A ``{label: value}`` mapping as a list of :class:`Labelled`; anything else as it is."""
    if not isinstance(values, dict):
        return values
    if not values:
        raise SpecError([f"study: {where}.{key}: empty (give at least one label: value)"])
    out = []
    for label, value in values.items():
        text = f"{label:g}" if isinstance(label, float) else str(label)
        if isinstance(label, bool) or not re.fullmatch(r"[A-Za-z0-9_.+\-]+", text):
            raise SpecError([f"study: {where}.{key}: label {label!r} may use letters, digits and _ . + - only"])
        out.append(Labelled(text, value))
    return out


def _plain(value: Any) -> Any:
    """A setting's value as stored (its label, for a labelled value)."""
    return value.label if isinstance(value, Labelled) else value


def expand(definition: dict, folder: Path | None = None) -> Study:
    """Every cell of a study definition, resolved and validated (all problems at once)."""
    unknown = [k for k in definition if k not in STUDY_KEYS]
    if unknown:
        raise SpecError([f"study: unknown key {unknown[0]!r}{suggest(unknown[0], list(STUDY_KEYS))}"])
    base = _base(definition, folder)
    variants, settings = _axes(definition)
    seeds = parse_seeds(definition["seeds"]) if "seeds" in definition else None
    common = _assignments(definition.get("set") or {})
    last = _assignments(definition.get("override") or {})
    for key, value in (("set", common), ("override", last)):
        if not isinstance(value, dict):
            raise SpecError([f"study: {key}: must be a mapping of key: value, got {value!r}"])
    n = len(variants) * len(settings) * len(seeds or [None])
    if n > MAX_CELLS:
        raise SpecError([f"study: {n:,} cells; at most {MAX_CELLS:,} (split the study)"])
    name = str(definition.get("name") or base.get("name") or "study")
    if not re.fullmatch(r"[A-Za-z0-9_.\-]+", name):
        raise SpecError([f"study: name {name!r} may use letters, digits and _ . - only"])
    axes = list(settings[0]) if settings else []
    short = _short_keys(axes)
    problems: dict[str, list[str]] = {}
    cells: list[Cell] = []
    named: dict[str, list[tuple[str | None, dict]]] = {}  # setting name -> (variant, values) of each cell
    for overrides, variant in variants:
        for values in settings:
            for seed in seeds or [None]:
                label = "_".join([*([variant] if variant else []),
                                  *(f"{short[k]}={_readable(v)}" for k, v in values.items())]) or "base"
                where = label + (f"_seed={seed}" if seed is not None else "")
                raw = copy.deepcopy(base)
                given = {k: v.value if isinstance(v, Labelled) else v for k, v in values.items()}
                try:
                    for key, value in (*common.items(), *overrides.items(), *given.items(), *last.items()):
                        set_value(raw, str(key), copy.deepcopy(value), what="key")
                    if seed is not None:
                        raw["seed"] = seed
                    raw["name"] = _spec_name(name, label)
                    spec = validate(raw)
                except SpecError as exc:
                    for problem in exc.problems:
                        problems.setdefault(problem, []).append(where)
                    continue
                digest = spec_hash(spec)
                stored = {k: _plain(v) for k, v in values.items()}
                cells.append(Cell(f"{where}-{digest}", label, stored, variant, spec.seed, spec, digest))
                named.setdefault(label, []).append((variant, given))
    if problems:
        raise SpecError([_grouped(p, where, n) for p, where in problems.items()])
    seen: dict[str, str] = {}
    for c in cells:
        if c.hash in seen:
            raise SpecError([f"study: cells {seen[c.hash]!r} and {c.name!r} resolve to the same spec"])
        seen[c.hash] = c.name
    for label, settings_named in named.items():  # one name, two settings: their results would be pooled
        if any(s != settings_named[0] for s in settings_named[1:]):
            raise SpecError([f"study: two settings are both named {label!r} (long values are cut short in names); "
                             "give the values labels: grid: {KEY: {label: value, ...}}"])
    report = dict(_mapping(definition, "report"))
    if report.get("mitigations") is not None:
        from ..report.mitigations import check_config

        found = check_config(report["mitigations"], cells)
        if found:
            raise SpecError(found)
    return Study(name, str(definition.get("description", "")), definition, axes, cells, report,
                 definition.get("errors"))


def _grouped(problem: str, where: list[str], n: int) -> str:
    if len(where) == n and n > 1:
        return f"every cell: {problem}"
    shown = ", ".join(where[:3]) + (f" and {len(where) - 3} more" if len(where) > 3 else "")
    return f"cell {shown}: {problem}"


def _short_keys(keys: list[str]) -> dict[str, str]:
    """The last part of each dotted key, or the whole key where two would share it."""
    last = [k.split(".")[-1] for k in keys]
    return {k: (s if last.count(s) == 1 else k) for k, s in zip(keys, last)}


def _readable(value: Any) -> str:
    if isinstance(value, Labelled):
        return value.label
    if isinstance(value, dict):
        text = "-".join(_readable(v) for v in value.values())
    elif isinstance(value, list):
        text = "+".join(_readable(v) for v in value)
    elif isinstance(value, float):
        text = f"{value:g}"
    else:
        text = str(value)
    text = re.sub(r"[^A-Za-z0-9._+\-]", "", text.replace(" ", ""))
    return text[:24] or "x"


def _spec_name(study: str, label: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.\-]", "-", f"{study}.{label}")[:120]


def spec_hash(spec: ExperimentSpec) -> str:
    """Eight hex digits of the SHA-256 of the resolved spec, without its name and description (which
    only label it): equal specs get equal hashes, and a changed default makes a new cell."""
    dump = spec.model_dump(mode="json")
    dump.pop("name", None)
    dump.pop("description", None)
    return hashlib.sha256(yaml.safe_dump(dump, sort_keys=True).encode()).hexdigest()[:8]


__all__ = ["Cell", "Study", "build", "expand", "is_study", "parse_seeds", "parse_values", "spec_hash"]
