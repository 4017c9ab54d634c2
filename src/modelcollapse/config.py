"""Experiment specs: typed, validated, YAML in and YAML out.

A spec is validated completely before any work starts. Every error names the key and
the bad value; unknown kinds and keys get a "did you mean ...?". The ``data``, ``model``
and ``policy`` sections are validated by the spec class that their ``kind`` registered
(see :mod:`.data`, :mod:`.models`, :mod:`.policies`), so a plug-in's family, data kind or
policy is as much a part of the schema as a built-in one.
"""

from __future__ import annotations

import copy
import functools
import math
import re
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal, Optional, Union

import numpy as np
import yaml
from pydantic import BaseModel, Field, SerializeAsAny, ValidationError, field_validator, model_validator

from . import metrics as _metrics
from .data import DATA, DataSpec
from .errors import DataError, SpecError  # noqa: F401  (re-exported)
from .models import MODELS, ModelSpec
from .params import Spec
from .policies import POLICIES, PolicySpec
from .registry import Registry, UnknownNameError, suggest
from . import schedules as _schedules
from .schedules import ScheduleError, TrainSize

#: The default experiment: the paper's single-Gaussian chain.
DEFAULT_KIND = "gaussian"


class ReportSpec(Spec):
    # Generations the run has not reached (yet: --resume can extend it) are skipped.
    density_generations: list[Annotated[int, Field(ge=0)]] = Field(
        default_factory=lambda: [0, 50, 100, 150, 200, 350, 2000])
    replicates_shown: int = Field(3, ge=1)


#: Experiment trackers a run can log to (``logging.trackers``, ``--log``): see :mod:`.trackers`.
TRACKER_NAMES = ("tensorboard", "mlflow", "wandb")


class LoggingSpec(Spec):
    """Where a run is mirrored besides its directory (which stays the source of truth): experiment
    trackers, logged per generation. Changing it never changes a run's numbers, so a run may be resumed
    with other trackers."""

    trackers: list[str] = Field(default_factory=list)
    # Tracker files (TensorBoard events, the MLflow file store, W&B offline runs); default: DIR/trackers
    # of the run (a study: of the study, shared by its cells). MLFLOW_TRACKING_URI, when set, wins for MLflow.
    dir: Optional[str] = None
    project: str = Field("modelcollapse", min_length=1)  # the W&B project; MLflow's experiment for a single run
    wandb_mode: Literal["offline", "online"] = "offline"  # offline: W&B writes files here (`wandb sync` sends them)
    text_samples: int = Field(4, ge=0, le=64)  # generated texts per generation in a language model's table

    @field_validator("trackers", mode="before")
    @classmethod
    def _trackers(cls, value: Any) -> Any:
        if isinstance(value, str):  # "tensorboard,mlflow", as --log takes it
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"must be a list of tracker names ({', '.join(TRACKER_NAMES)}), got {value!r}")
        for v in value:
            if v not in TRACKER_NAMES:
                raise ValueError(f"unknown tracker {v!r}{suggest(str(v), list(TRACKER_NAMES))}")
        return list(dict.fromkeys(value))


def _spec_of(section: str, kind: str) -> type[Spec]:
    """The spec class that ``kind`` registered for ``section`` (data, model or policy)."""
    entry = _SECTIONS[section].get(kind)
    return entry if section == "data" else entry.spec


def _dispatch(section: str, value: Any) -> Any:
    """Validate a ``data``/``model``/``policy`` section with the class its ``kind`` names."""
    if isinstance(value, BaseModel):
        value = value.model_dump()
    if not isinstance(value, dict):
        raise ValueError(f"must be a mapping with a 'kind', got {value!r}")
    kind = value.get("kind")
    registry = _SECTIONS[section]
    if kind is None:
        raise ValueError(f"kind: missing (choices: {', '.join(sorted(registry.names()))})")
    if not isinstance(kind, str) or kind not in registry:
        raise ValueError(f"kind: unknown value {kind!r}{suggest(str(kind), registry.names())}")
    return _spec_of(section, kind).model_validate(value)


_SECTIONS: dict[str, Registry[Any]] = {"data": DATA, "model": MODELS, "policy": POLICIES}


class ExperimentSpec(Spec):
    """A whole experiment. See the README's spec reference for every key."""

    name: str = Field("experiment", min_length=1, pattern=r"^[A-Za-z0-9_.\-]+$")
    description: str = ""
    seed: int = Field(0, ge=0)
    replicates: int = Field(100, ge=1)
    generations: int = Field(100, ge=0)
    # An integer, a schedule ({kind: linear, a, b} or {kind: power, M0, p}) or a list of sizes: see schedules.py.
    train_size: Annotated[TrainSize, Field(union_mode="left_to_right")] = 100
    heldout_size: int = Field(1000, ge=1)
    metric_samples: int = Field(1000, ge=2)
    data: SerializeAsAny[DataSpec] = Field(default_factory=lambda: _spec_of("data", DEFAULT_KIND)())
    model: SerializeAsAny[ModelSpec] = Field(default_factory=lambda: _spec_of("model", DEFAULT_KIND)())
    policy: SerializeAsAny[PolicySpec] = Field(default_factory=lambda: _spec_of("policy", "replace")())
    metrics: Optional[list[str]] = None
    workers: int = Field(1, ge=1, le=512)
    checkpoint_every: Optional[int] = Field(None, ge=1)  # generations; None = every few seconds
    # Fitted parameters kept in generations/*: "all", or "ends" (generation 0 and the latest only,
    # for models of hundreds of MB; metrics, provenance and previews are kept for every generation).
    keep_params: Literal["all", "ends"] = "all"
    report: ReportSpec = Field(default_factory=ReportSpec)
    logging: LoggingSpec = Field(default_factory=LoggingSpec)

    @field_validator("data", "model", "policy", mode="before")
    @classmethod
    def _section(cls, value: Any, info: Any) -> Any:
        return _dispatch(info.field_name, value)

    @field_validator("train_size", mode="before")
    @classmethod
    def _train_size(cls, value: Any) -> Any:
        # Validated here, member by member, for one clear message instead of one per member of the union.
        if isinstance(value, dict):
            kinds = {"linear": _schedules.LinearSchedule, "power": _schedules.PowerSchedule}
            kind = value.get("kind")
            if kind not in kinds:
                raise ValueError(f"kind: unknown schedule {kind!r}{suggest(str(kind), list(kinds))} "
                                 "(a schedule is {kind: linear, a, b} or {kind: power, M0, p})")
            try:
                return kinds[kind].model_validate(value)
            except ValidationError as exc:
                err = exc.errors()[0]
                raise ValueError(f"{'.'.join(map(str, err['loc']))}: {err['msg']}") from None
        if isinstance(value, (list, tuple)):
            for i, m in enumerate(value):
                if isinstance(m, bool) or not isinstance(m, int) or m < 1:
                    raise ValueError(f"entry {i} is {m!r}: sizes must be positive integers")
            return list(value)
        if isinstance(value, bool) or not isinstance(value, (int, BaseModel)):
            raise ValueError(f"must be a positive integer, a list of them or a schedule {{kind: linear, a, b}} or "
                             f"{{kind: power, M0, p}}, got {value!r}")
        if isinstance(value, int) and value < 1:
            raise ValueError(f"must be at least 1, got {value}")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> "ExperimentSpec":
        family, data = MODELS.get(self.model.kind), DATA.get(self.data.kind)
        if family.data_type != data.data_type:
            fits = sorted(k for k in MODELS.names() if MODELS.get(k).data_type == data.data_type)
            raise ValueError(
                f"model.kind: {self.model.kind!r} cannot be fitted to data.kind={self.data.kind!r} "
                f"({data.data_type} data); use one of: {', '.join(fits) or 'none registered'}"
            )
        params = self.model.model_dump()
        try:
            if self.metrics is None:
                self.metrics = _metrics.defaults(self.model.kind, self.data.kind, params)
        except UnknownNameError as exc:
            raise ValueError(f"metrics: {exc}") from None
        for i, name in enumerate(self.metrics):
            try:
                _metrics.resolve(name, self.model.kind, self.data.kind, params)
            except UnknownNameError as exc:
                raise ValueError(f"metrics[{i}]: {exc}") from None
        self._check_sizes(family)
        family.hook("check_spec")(self)
        return self

    def _check_sizes(self, family: Any) -> None:
        try:
            # A constant size is checked on two generations: the same verdict without an array as long as the run.
            m = self.sizes() if not isinstance(self.train_size, int) else _schedules.sizes(self.train_size, 1)
        except ScheduleError as exc:
            raise ValueError(f"train_size: {exc}") from None
        hook = getattr(family.cls, "min_train_size", None)  # a plug-in need not derive from BaseModel
        need = int(hook(self.model.model_dump())) if callable(hook) else 1
        if (m < need).any():
            g = int(np.flatnonzero(m < need)[0])
            raise ValueError(f"train_size: {m[g]} at generation {g} is below the {need} examples a "
                             f"{self.model.kind} fit needs")
        policy = POLICIES.get(self.policy.kind).build(self.policy)
        problem = policy.check_sizes(m)
        if problem:
            raise ValueError(f"train_size: {problem}")
        policy.check_experiment(self)

    def sizes(self) -> np.ndarray:
        """The training-set size M_g of every generation g = 0..generations (int64)."""
        return _schedules.sizes(self.train_size, self.generations)

    @property
    def max_train_size(self) -> int:
        return self.train_size if isinstance(self.train_size, int) else int(self.sizes().max())

    def to_yaml(self) -> str:
        dump = self.model_dump(mode="json")
        if not self.logging.model_fields_set:  # not asked for: left out (it never changes a run's numbers)
            dump.pop("logging")
        return yaml.safe_dump(dump, sort_keys=False)


# -- loading ----------------------------------------------------------------------------
def presets() -> dict[str, Path]:
    """Built-in spec files by name (one run each; the studies are :func:`study_presets`)."""
    folder = resources.files("modelcollapse") / "presets"
    return {Path(p.name).stem: Path(str(p)) for p in folder.iterdir() if p.name.endswith(".yaml")}


def study_presets() -> dict[str, Path]:
    """Built-in studies by name (``presets/studies/*.yaml``: see :mod:`modelcollapse.study`)."""
    folder = resources.files("modelcollapse") / "presets" / "studies"
    if not folder.is_dir():
        return {}
    return {Path(p.name).stem: Path(str(p)) for p in folder.iterdir() if p.name.endswith(".yaml")}


def all_presets() -> dict[str, Path]:
    return {**presets(), **study_presets()}


MAX_SPEC_BYTES = 1 << 20  # a spec is a page of YAML; a megabyte is a wrong file


class _SpecLoader(yaml.SafeLoader):
    """YAML without aliases: a spec has no use for them, and a few nested ones expand to billions of nodes."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            mark = self.peek_event().start_mark
            raise yaml.composer.ComposerError(None, None, "aliases (*name) are not allowed in a spec", mark)
        return super().compose_node(parent, index)


# YAML 1.1 (PyYAML) reads 1e-12 as a string, and a strict spec then refuses `--set model.tol=1e-12`;
# YAML 1.2 and every user read it as a number.
_SpecLoader.add_implicit_resolver("tag:yaml.org,2002:float", re.compile(r"^[-+]?[0-9][0-9_]*[eE][-+]?[0-9]+$"),
                                  list("-+0123456789"))


def parse_yaml(text: str, where: str) -> Any:
    """YAML text as Python data; a syntax error names ``where``, the line and the column."""
    try:
        return yaml.load(text, Loader=_SpecLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        position = f", line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = " ".join(filter(None, [exc.context, exc.problem]))
        raise SpecError([f"{where}{position}: YAML error: {problem}"]) from None
    except yaml.YAMLError as exc:
        raise SpecError([f"{where}: YAML error: {exc}"]) from None


def read_file(path: Path, what: str = "spec file") -> str:
    """The text of a spec file; anything that is not a readable UTF-8 file is named as what it is."""
    from .store import describe_path

    problem = describe_path(path)
    if problem:
        raise SpecError([f"{what} {str(path)!r} {problem}"])
    if path.stat().st_size > MAX_SPEC_BYTES:
        raise SpecError([f"{what} {str(path)!r} is {path.stat().st_size:,} bytes: too large for a spec"])
    data = path.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SpecError([f"{what} {str(path)!r} is not UTF-8 text (byte {exc.start} is {data[exc.start]:#04x}): "
                         "is it a binary file?"]) from None


@functools.lru_cache(maxsize=None)
def _preset_text(name: str) -> Any:
    # Our own files: libyaml's parser (ten times faster; `modelcollapse presets` reads all of them).
    return yaml.load(all_presets()[name].read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))  # noqa: S506


def _preset(name: str) -> Any:
    return copy.deepcopy(_preset_text(name))  # callers edit the dict (overrides)


def read_source(source: Union[str, Path, dict]) -> dict:
    """A spec as a plain dict, from a preset name, a YAML path or a dict."""
    if isinstance(source, dict):
        return dict(source)
    text = str(source)
    if "\0" in text:
        raise SpecError([f"{text!r} is not a valid file name or preset"])
    path = Path(text)
    table = all_presets()
    if path.exists() and not (text in table and path.is_dir()):
        raw = parse_yaml(read_file(path), text)
    elif text in table:  # a preset, even if a run directory of the same name sits here
        raw = _preset(text)
    elif path.suffix in (".yaml", ".yml") or "/" in text:
        raise SpecError([f"spec file {text!r} does not exist"])
    else:
        raise SpecError([f"{text!r} is neither a spec file nor a preset{suggest(text, list(table))}"])
    if not isinstance(raw, dict):
        kind = "empty" if raw is None else f"a YAML {type(raw).__name__}"
        raise SpecError([f"{text!r} must hold a YAML mapping (key: value lines) at the top level; it is {kind}"])
    return raw


def apply_override(raw: dict, assignment: str) -> None:
    """Apply ``a.b.c=value`` in place; the value is parsed as YAML (``1`` is int, ``[0, 1]`` a list)."""
    if "=" not in assignment:
        raise SpecError([f"--set expects KEY=VALUE, got {assignment!r}"])
    key, value = assignment.split("=", 1)
    set_value(raw, key, parse_yaml(value, f"--set {key}"))


def set_value(raw: dict, key: str, parsed: Any, what: str = "--set") -> None:
    """Set the dotted ``key`` of a raw spec to an already-parsed value, in place (mappings on the way
    are created; a list is indexed by number)."""
    parts = key.strip().split(".")
    if not all(parts):
        raise SpecError([f"{what} key {key!r} is malformed"])
    node: Any = raw
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        where = ".".join(parts[: i + 1])
        if isinstance(node, list):
            if not part.lstrip("-").isdigit() or not -len(node) <= int(part) < len(node):
                raise SpecError([f"{what} {key}: {'.'.join(parts[:i]) or 'the spec'} is a list of {len(node)}; "
                                 f"{part!r} is not an index into it"])
            if last:
                node[int(part)] = parsed
            else:
                node = node[int(part)]
            continue
        if not isinstance(node, dict):
            raise SpecError([f"{what} {key}: {'.'.join(parts[:i])} is not a mapping"])
        if last:
            node[part] = parsed
        elif not isinstance(node.get(part, {}), (dict, list)):
            raise SpecError([f"{what} {key}: {where} is not a mapping"])
        else:
            node = node.setdefault(part, {})


def non_finite(value: Any, path: str = "") -> list[str]:
    """Keys holding NaN or an infinity anywhere in a raw spec (a spec never needs one)."""
    if isinstance(value, float) and not math.isfinite(value):
        return [f"{path or 'spec'}: must be a finite number, got {value}"]
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in non_finite(v, f"{path}.{k}" if path else str(k))]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in non_finite(v, f"{path}[{i}]")]
    return []


def load_spec(source: Union[str, Path, dict], overrides: tuple[str, ...] | list[str] = (), *,
              stored: bool = False) -> ExperimentSpec:
    """Read, override and validate a spec; raises :class:`SpecError` listing every problem.

    ``stored``: the spec is a run directory's ``config.yaml`` (see :func:`as_stored`)."""
    raw = read_source(source)
    if stored:
        raw = as_stored(raw)
    for assignment in overrides:
        apply_override(raw, assignment)
    return validate(raw)


def as_stored(raw: Any) -> Any:
    """A run directory's spec as it ran: a field its family added later (``stored_defaults``, e.g. the
    GMM's ``backend``) is missing from a config.yaml written before, and takes the value it had then."""
    model = raw.get("model") if isinstance(raw, dict) else None
    if isinstance(model, dict) and isinstance(model.get("kind"), str) and model["kind"] in MODELS:
        for key, value in getattr(MODELS.get(model["kind"]).cls, "stored_defaults", {}).items():
            model.setdefault(key, value)
    return raw


def validate(raw: dict) -> ExperimentSpec:
    bad = non_finite(raw)
    if bad:
        raise SpecError(bad)
    try:
        return ExperimentSpec.model_validate(raw)
    except ValidationError as exc:
        raise SpecError([_describe(err, raw) for err in exc.errors()]) from None
    except UnknownNameError as exc:  # raised from inside a model validator
        raise SpecError([str(exc)]) from None


def _describe(err: dict, raw: dict) -> str:
    loc = [str(p) for p in err["loc"]]
    key = ".".join(loc) or "spec"
    kind, msg = err["type"], err["msg"]
    if kind == "extra_forbidden":
        fields = _fields_at(loc[:-1], raw)
        return f"{key}: unknown key{suggest(loc[-1], fields)}"
    msg = msg.removeprefix("Value error, ")
    head, sep, rest = msg.partition(": ")
    if kind == "value_error" and sep and re.fullmatch(r"[A-Za-z_][\w.\[\]]*", head):
        if loc and (key == head or key.endswith("." + head)):  # a field validator naming its own field
            return f"{key}: {rest}"
        return f"{key + '.' if loc else ''}{head}: {rest}"
    if kind == "value_error" and isinstance(err.get("ctx", {}).get("error"), UnknownNameError):
        return f"{key}: {err['ctx']['error']}"
    if "input" in err and kind not in ("value_error", "missing") and not isinstance(err["input"], dict):
        return f"{key}: {msg} (got {err['input']!r})"
    return f"{key}: {msg}"


def _fields_at(loc: list[str], raw: dict) -> list[str]:
    """The keys a spec allows at ``loc`` (for "did you mean"), following each section's ``kind``."""
    cls: Any = ExperimentSpec
    node: Any = raw
    for part in loc:
        node = node.get(part, {}) if isinstance(node, dict) else {}
        if cls is ExperimentSpec and part in _SECTIONS:
            kind = node.get("kind") if isinstance(node, dict) else None
            try:
                cls = _spec_of(part, kind)
            except (UnknownNameError, TypeError):
                return []
            continue
        field = getattr(cls, "model_fields", {}).get(part)
        if field is None:
            return []
        inner = [a for a in (field.annotation, *getattr(field.annotation, "__args__", ()))
                 if isinstance(a, type) and issubclass(a, BaseModel)]
        if not inner:
            return []
        cls = inner[0]
    return list(cls.model_fields)
