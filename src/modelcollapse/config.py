"""Experiment specs: typed, validated, YAML in and YAML out.

A spec is validated completely before any work starts. Every error names the key and
the bad value; unknown kinds and keys get a "did you mean ...?". The ``data``, ``model``
and ``policy`` sections are validated by the spec class that their ``kind`` registered
(see :mod:`.data`, :mod:`.models`, :mod:`.policies`), so a plug-in's family, data kind or
policy is as much a part of the schema as a built-in one.
"""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path
from typing import Any, Literal, Optional, Union

import yaml
from pydantic import BaseModel, Field, SerializeAsAny, ValidationError, field_validator, model_validator

from . import metrics as _metrics
from .data import DATA, DataSpec
from .errors import DataError, SpecError  # noqa: F401  (re-exported)
from .models import MODELS, ModelSpec
from .params import Spec
from .policies import POLICIES, PolicySpec
from .registry import Registry, UnknownNameError, suggest

#: The default experiment: the paper's single-Gaussian chain.
DEFAULT_KIND = "gaussian"


class ReportSpec(Spec):
    density_generations: list[int] = Field(default_factory=lambda: [0, 50, 100, 150, 200, 350, 2000])
    replicates_shown: int = Field(3, ge=1)


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
    train_size: int = Field(100, ge=1)
    heldout_size: int = Field(1000, ge=1)
    metric_samples: int = Field(1000, ge=2)
    data: SerializeAsAny[DataSpec] = Field(default_factory=lambda: _spec_of("data", DEFAULT_KIND)())
    model: SerializeAsAny[ModelSpec] = Field(default_factory=lambda: _spec_of("model", DEFAULT_KIND)())
    policy: SerializeAsAny[PolicySpec] = Field(default_factory=lambda: _spec_of("policy", "replace")())
    metrics: Optional[list[str]] = None
    workers: int = Field(1, ge=1)
    checkpoint_every: Optional[int] = Field(None, ge=1)  # generations; None = every few seconds
    # Fitted parameters kept in generations/*: "all", or "ends" (generation 0 and the latest only,
    # for models of hundreds of MB; metrics, provenance and previews are kept for every generation).
    keep_params: Literal["all", "ends"] = "all"
    report: ReportSpec = Field(default_factory=ReportSpec)

    @field_validator("data", "model", "policy", mode="before")
    @classmethod
    def _section(cls, value: Any, info: Any) -> Any:
        return _dispatch(info.field_name, value)

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
        family.hook("check_spec")(self)
        return self

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)


# -- loading ----------------------------------------------------------------------------
def presets() -> dict[str, Path]:
    """Built-in spec files by name."""
    folder = resources.files("modelcollapse") / "presets"
    return {Path(p.name).stem: Path(str(p)) for p in folder.iterdir() if p.name.endswith(".yaml")}


def read_source(source: Union[str, Path, dict]) -> dict:
    """A spec as a plain dict, from a preset name, a YAML path or a dict."""
    if isinstance(source, dict):
        return dict(source)
    text = str(source)
    path = Path(text)
    table = presets()
    if path.is_file():
        raw = yaml.safe_load(path.read_text())
    elif text in table:  # a preset, even if a run directory of the same name sits here
        raw = yaml.safe_load(table[text].read_text())
    elif path.suffix in (".yaml", ".yml") or "/" in text:
        raise SpecError([f"spec file {text!r} does not exist"])
    else:
        raise SpecError([f"{text!r} is neither a spec file nor a preset{suggest(text, list(table))}"])
    if not isinstance(raw, dict):
        raise SpecError([f"{text!r} must hold a YAML mapping at the top level"])
    return raw


def apply_override(raw: dict, assignment: str) -> None:
    """Apply ``a.b.c=value`` in place; the value is parsed as YAML (``1`` is int, ``[0, 1]`` a list)."""
    if "=" not in assignment:
        raise SpecError([f"--set expects KEY=VALUE, got {assignment!r}"])
    key, value = assignment.split("=", 1)
    parts = key.strip().split(".")
    if not all(parts):
        raise SpecError([f"--set key {key!r} is malformed"])
    try:
        parsed = yaml.safe_load(value)
    except yaml.YAMLError as exc:
        raise SpecError([f"--set {key}: cannot parse value {value!r}: {exc}"]) from None
    node: Any = raw
    for i, part in enumerate(parts[:-1]):
        if isinstance(node, list):
            node = node[int(part)]
            continue
        if not isinstance(node.get(part, {}), (dict, list)):
            raise SpecError([f"--set {key}: {'.'.join(parts[: i + 1])} is not a mapping"])
        node = node.setdefault(part, {})
    if isinstance(node, list):
        node[int(parts[-1])] = parsed
    else:
        node[parts[-1]] = parsed


def load_spec(source: Union[str, Path, dict], overrides: tuple[str, ...] | list[str] = ()) -> ExperimentSpec:
    """Read, override and validate a spec; raises :class:`SpecError` listing every problem."""
    raw = read_source(source)
    for assignment in overrides:
        apply_override(raw, assignment)
    return validate(raw)


def validate(raw: dict) -> ExperimentSpec:
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
