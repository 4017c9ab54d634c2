"""Trust, then verify: what a checkpoint covers is checked before a run directory is resumed or
reported, and ``modelcollapse repair`` rebuilds what can be rebuilt.

A checkpoint records, for the generation it was written at: the size and SHA-256 of the
prefix of each appended file (``metrics.jsonl``, ``provenance.jsonl``), the SHA-256 of each
Parquet part, of ``real.npz``, of the contents of every generation file (model parameters
aside: a ``keep_params: ends`` run drops them from older generations), and of the model
parameters that a resume needs (generation 0's and the checkpoint's). :func:`verify` checks
all of them (runs written by version 0.1 have no digests: their files are parsed and counted
instead) and names every file that differs.

Metric rows and provenance lines are also kept, as arrays, in the generation files, so
:func:`repair` can rebuild both exactly, byte for byte (the digests prove it); ``real.npz``
is redrawn from the run's random streams; a damaged checkpoint falls back to the one before
it (``checkpoint.prev.npz``), losing the generations since; a damaged generation file that a
resume does not need is moved aside to ``damaged/``. What cannot be rebuilt (the spec, a
generation file a resume needs) is said plainly, and the run is marked ``damaged``: a
repaired run is never called completed unless every generation it planned is intact.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .results import MetricWriter, PARTS, part_files, parquet_bytes, rows_for_generation
from .store import APPENDED, STATS, RunDirError, RunStore, dense_provenance, dumps, now, sha256

CHECKPOINTS = ("checkpoint.npz", "checkpoint.prev.npz")


def tensor_digest(arrays: dict[str, np.ndarray], meta: dict[str, str] | None = None) -> str:
    """SHA-256 of named arrays (names, dtypes, shapes, bytes) and string metadata: the same for the
    same contents however the file holding them was laid out."""
    h = hashlib.sha256()
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(f"{name}\0{a.dtype.str}\0{a.shape}\0".encode())
        h.update(memoryview(a).cast("B") if a.size else b"")
    h.update(json.dumps(meta or {}, sort_keys=True).encode())
    return h.hexdigest()


def split_model(arrays: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """(everything but the model parameters, the model parameters)."""
    model = {k: v for k, v in arrays.items() if k.startswith("model/")}
    return {k: v for k, v in arrays.items() if k not in model}, model


# -- what a checkpoint records --------------------------------------------------------------
@dataclass
class Ledger:
    """Digests of what a run has written, kept as it writes, for its next checkpoint."""

    generations: list[str] = field(default_factory=list)  # contents of each generation file, model aside
    models: dict[int, str] = field(default_factory=dict)  # model parameters still stored, by generation
    real: str = ""
    checkpoints: list[int] = field(default_factory=list)  # generations of the last two checkpoints

    def record(self, g: int, content: dict[str, np.ndarray], model: dict[str, np.ndarray], meta: dict[str, str]) -> None:
        self.generations[g:] = [tensor_digest(content, meta)]
        self.models[g] = tensor_digest(model)

    def protected(self) -> set[int]:
        """Generations whose model parameters a resume may need: 0, the checkpoints', the latest."""
        return {0, *self.checkpoints, len(self.generations) - 1}

    @classmethod
    def from_checkpoint(cls, ck: dict, previous: dict | None) -> "Ledger":
        g = int(ck["generation"])
        models = [str(d) for d in ck["model_digests"]] if "model_digests" in ck else ["", ""]
        return cls(generation_digests(ck, g), {0: models[0], g: models[1]},
                   str(ck["real_digest"]) if "real_digest" in ck else "",
                   [int(previous["generation"]), g] if previous is not None else [g])


def covered(store: RunStore, g: int, writer: MetricWriter, ledger: Ledger) -> dict:
    """The arrays a checkpoint at generation g adds: sizes and digests of everything written so far."""
    sizes = [(store.path / name).stat().st_size if (store.path / name).exists() else 0 for name in APPENDED]
    return {
        "generation": np.array(g),
        "offsets": np.array(sizes, dtype=np.int64),
        "digests": np.array([store.digest(name) for name in APPENDED]),
        "gen_digests": np.array(ledger.generations[: g + 1], dtype="<U64"),
        "model_digests": np.array([ledger.models.get(0, ""), ledger.models.get(g, "")], dtype="<U64"),
        "real_digest": np.array(ledger.real),
        "metrics_format": np.array(writer.format),
        "parts": np.array(list(writer.parts), dtype=str),
        "part_digests": np.array(list(writer.parts.values()), dtype="<U64"),
    }


def offsets(ck: dict) -> dict[str, int]:
    return {name: int(off) for name, off in zip(APPENDED, ck["offsets"])}


def generation_digests(ck: dict, g: int) -> list[str]:
    return [str(d) for d in ck["gen_digests"]] if "gen_digests" in ck else [""] * (g + 1)


def parts(ck: dict) -> dict[str, str]:
    if "parts" not in ck:
        return {}
    return {str(n): str(d) for n, d in zip(ck["parts"], ck["part_digests"])}


# -- verification -------------------------------------------------------------------------
@dataclass
class Problem:
    file: str
    what: str
    generation: int | None = None  # set for a generation file

    def __str__(self) -> str:
        return f"{self.file}: {self.what}"


@dataclass
class Verdict:
    spec: Any  # the stored spec (None when config.yaml itself is damaged)
    checkpoint: dict | None  # the checkpoint a resume continues from (None: none written yet)
    metrics_format: str
    problems: list[Problem] = field(default_factory=list)

    def refusal(self, path: Path) -> str:
        listed = "\n  ".join(str(p) for p in self.problems)
        return (f"run directory {str(path)!r} is damaged:\n  {listed}\n"
                f"`modelcollapse repair {path}` rebuilds what can be rebuilt (and says what cannot)")


def verify(store: RunStore) -> Verdict:
    """Check everything the latest checkpoint covers; the verdict lists each file that is wrong."""
    from .config import as_stored, validate
    from .config import SpecError
    import yaml

    try:
        spec = validate(as_stored(yaml.safe_load(store.config_text())))
    except (RunDirError, yaml.YAMLError, SpecError, TypeError) as exc:
        return Verdict(None, None, "jsonl", [Problem("config.yaml", f"unreadable or invalid: {exc}")])
    verdict = Verdict(spec, None, "jsonl")
    try:
        verdict.metrics_format = store.manifest().get("metrics_format", "jsonl")
    except RunDirError as exc:
        verdict.problems.append(Problem("manifest.json", str(exc).split(": ", 1)[-1]))
    if not store.has("checkpoint.npz"):
        if store.has("checkpoint.prev.npz"):
            verdict.problems.append(Problem("checkpoint.npz", "missing (an earlier checkpoint exists)"))
        return verdict  # never checkpointed: nothing is covered yet, a resume starts over
    try:
        ck = store.read_npz("checkpoint.npz")
        _check_keys(ck, spec)
    except RunDirError as exc:
        verdict.problems.append(Problem("checkpoint.npz", str(exc).split(": ", 1)[-1]))
        return verdict
    verdict.metrics_format = str(ck["metrics_format"]) if "metrics_format" in ck else verdict.metrics_format
    verdict.problems += covered_problems(store, spec, ck)
    if not verdict.problems:
        verdict.checkpoint = ck
    return verdict


def _check_keys(ck: dict, spec: Any) -> None:
    missing = [k for k in ("generation", "offsets", "stopped_replicates", "stopped_reasons") if k not in ck]
    if missing:
        raise RunDirError(f"checkpoint: lacks {', '.join(missing)}")
    g = int(ck["generation"])
    if not 0 <= g <= spec.generations:
        raise RunDirError(f"checkpoint: generation {g} is outside 0..{spec.generations}")
    for key, arr in ck.items():
        if key.startswith("rng_") and arr.shape != (spec.replicates, 6):
            raise RunDirError(f"checkpoint: {key} has shape {arr.shape}, expected ({spec.replicates}, 6)")


def covered_problems(store: RunStore, spec: Any, ck: dict) -> list[Problem]:
    """Every difference between the files and what checkpoint ``ck`` recorded of them."""
    g = int(ck["generation"])
    problems = []
    digests = [str(d) for d in ck["digests"]] if "digests" in ck else [""] * len(APPENDED)
    rows = {"metrics.jsonl": spec.replicates * (g + 1), "provenance.jsonl": g + 1}
    fmt = str(ck["metrics_format"]) if "metrics_format" in ck else "jsonl"
    for name, off, digest in zip(APPENDED, offsets(ck).values(), digests):
        why = _appended_problem(store.path / name, off, digest, rows[name] if fmt == "jsonl" or name != "metrics.jsonl" else 0)
        if why:
            problems.append(Problem(name, why))
    for part, digest in parts(ck).items():
        target = store.path / part
        if not target.is_file():
            problems.append(Problem(part, "missing"))
        elif sha256(target.read_bytes()) != digest:
            problems.append(Problem(part, "its contents changed since the checkpoint"))
    if store.has("real.npz"):
        data = (store.path / "real.npz").read_bytes()
        recorded = str(ck["real_digest"]) if "real_digest" in ck else ""
        if recorded and sha256(data) != recorded:
            problems.append(Problem("real.npz", "its contents changed since the checkpoint"))
        elif not recorded:
            try:
                store.read_npz("real.npz")
            except RunDirError as exc:
                problems.append(Problem("real.npz", str(exc).split(": ", 1)[-1]))
    else:
        problems.append(Problem("real.npz", "missing"))
    problems += generation_problems(store, ck, g)
    return problems


def _appended_problem(target: Path, offset: int, digest: str, rows: int) -> str | None:
    size = target.stat().st_size if target.exists() else 0
    if not target.exists() and offset:
        return "missing"
    if size < offset:
        return f"holds {size} bytes, but the checkpoint covers its first {offset}: it was cut short"
    if not offset:
        return None
    with open(target, "rb") as fh:
        prefix = fh.read(offset)
    if digest:
        return None if sha256(prefix) == digest else f"its first {offset} bytes (what the checkpoint covers) have changed"
    # A run written before digests existed: what it covers must still parse, one row per line.
    lines = prefix.split(b"\n")
    if lines[-1]:
        return f"the checkpoint's offset {offset} falls inside a line"
    for i, line in enumerate(lines[:-1], 1):
        try:
            json.loads(line)
        except ValueError:
            return f"line {i} is not valid JSON"
    if rows and len(lines) - 1 != rows:
        return f"holds {len(lines) - 1} lines where the checkpoint covers {rows}"
    return None


def generation_problems(store: RunStore, ck: dict, g: int) -> list[Problem]:
    """Generation files 0..g against the checkpoint's digests (runs of version 0.1: readable at all)."""
    digests = generation_digests(ck, g)
    models = [str(d) for d in ck["model_digests"]] if "model_digests" in ck else ["", ""]
    problems = []
    for k in range(g + 1):
        name = store.generation_file(k)
        if digests[k] == "lost":  # moved aside by an earlier repair
            continue
        try:
            arrays = store.read_tensors(name)
            meta = store.tensor_metadata(name)
        except RunDirError as exc:
            why = "missing" if "missing" in str(exc) else "unreadable: " + str(exc).split("damaged: ", 1)[-1]
            problems.append(Problem(name, why, k))
            continue
        content, model = split_model(arrays)
        if digests[k] and tensor_digest(content, meta) != digests[k]:
            problems.append(Problem(name, "its contents changed since the checkpoint", k))
        for which, recorded in ((0, models[0]), (g, models[1])):
            if k == which and recorded and tensor_digest(model) != recorded:
                problems.append(Problem(name, "its model parameters changed since the checkpoint (a resume needs them)", k))
    return problems


# -- repair ---------------------------------------------------------------------------------
class Unrepairable(RuntimeError):
    pass


@dataclass
class Repair:
    status: str  # the run's status after the repair: completed, interrupted or damaged
    actions: list[str] = field(default_factory=list)
    lost: list[str] = field(default_factory=list)


def repair(store: RunStore) -> Repair:
    """Rebuild what can be rebuilt; the caller holds the run's lock."""
    from .config import SpecError, as_stored, validate
    import yaml

    try:
        spec = validate(as_stored(yaml.safe_load(store.config_text())))
    except (RunDirError, yaml.YAMLError, SpecError, TypeError) as exc:
        raise Unrepairable(f"config.yaml is unreadable or invalid ({exc}): the run's spec is lost; "
                           "start the run again in a new directory") from None
    out = Repair("interrupted")
    candidates = [name for name in CHECKPOINTS if store.has(name)]
    chosen = None
    for name in candidates:
        try:
            ck = store.read_npz(name)
            _check_keys(ck, spec)
            ck = _restore(store, spec, ck, out)
        except (RunDirError, Unrepairable) as exc:
            out.lost.append(f"{name} cannot be used: {exc}")
            continue
        chosen = (name, ck)
        break
    if candidates and chosen is None:
        out.status = "damaged"
        _rewrite_manifest(store, spec, None, out)
        return out
    if chosen is not None:
        name, ck = chosen
        if name != "checkpoint.npz":
            out.actions.append(f"went back to the previous checkpoint (generation {int(ck['generation'])}); "
                               "the generations after it will be run again")
        store.write_npz("checkpoint.npz", ck)
        (store.path / "checkpoint.prev.npz").unlink(missing_ok=True)
        g = int(ck["generation"])
        _remove_beyond(store, g, parts(ck), out)
        stopped = len(ck["stopped_replicates"]) == spec.replicates
        out.status = "completed" if g == spec.generations or stopped else "interrupted"
    _rewrite_manifest(store, spec, chosen[1] if chosen else None, out)
    return out


def _restore(store: RunStore, spec: Any, ck: dict, out: Repair) -> dict:
    """Make every file checkpoint ``ck`` covers intact again, or raise Unrepairable."""
    g = int(ck["generation"])
    ck = dict(ck)
    digests = generation_digests(ck, g)
    bad = {p.generation: p.what for p in generation_problems(store, ck, g)}
    needed = {0, g} | (set(range(1, g + 1)) if _needs_history(spec, ck) else set())
    for k in sorted(bad):
        if k in needed:
            raise Unrepairable(f"{store.generation_file(k)} {bad[k]}, and a resume needs it")
    for k in sorted(bad):  # not needed to go on: set aside, the report skips it
        name = store.generation_file(k)
        where = "the report skips it"
        if (store.path / name).exists():
            (store.path / "damaged").mkdir(exist_ok=True)
            shutil.move(str(store.path / name), str(store.path / "damaged" / Path(name).name))
            where = "moved to damaged/"
        digests[k] = "lost"
        out.lost.append(f"{name}: {bad[k]}; {where} (its metric rows are kept where intact)")
    ck["gen_digests"] = np.array(digests, dtype="<U64")
    _restore_real(store, spec, ck, out)
    _restore_appended(store, spec, ck, out)
    _restore_parts(store, spec, ck, out)
    return ck


def _needs_history(spec: Any, ck: dict) -> bool:
    """Whether a resume reads every synthetic set: an accumulating chain, unless its checkpoint holds
    the running statistics that stand in for them."""
    from .policies import POLICIES

    has_stats = any(k.startswith(STATS) for k in ck)
    return bool(POLICIES.get(spec.policy.kind).cls.needs_history) and not has_stats


def _restore_real(store: RunStore, spec: Any, ck: dict, out: Repair) -> None:
    recorded = str(ck["real_digest"]) if "real_digest" in ck else ""
    if store.has("real.npz"):
        data = (store.path / "real.npz").read_bytes()
        if (recorded and sha256(data) == recorded) or not recorded and _loads(store, "real.npz"):
            return
    from .chain import Chain

    chain = Chain(spec)  # fresh streams: generation 0's real draw is the first of each stream
    real = chain.draw_real(int(chain.sizes[0]))
    arrays = {"X": real.X}
    if real.labels is not None:
        arrays["labels"] = real.labels
    if chain.source.stores_heldout:
        arrays["heldout"] = chain.source.heldout(spec, chain.needs, chain.streams["heldout"])
    digest = store.write_npz("real.npz", arrays)
    if recorded and digest != recorded:
        raise Unrepairable("real.npz was redrawn from the run's streams but does not match the original")
    ck["real_digest"] = np.array(digest)
    out.actions.append("redrew real.npz from the run's random streams (identical to the original)")


def _loads(store: RunStore, name: str) -> bool:
    try:
        store.read_npz(name)
        return True
    except RunDirError:
        return False


def _restore_appended(store: RunStore, spec: Any, ck: dict, out: Repair) -> None:
    g = int(ck["generation"])
    fmt = str(ck["metrics_format"]) if "metrics_format" in ck else "jsonl"
    digests = [str(d) for d in ck["digests"]] if "digests" in ck else [""] * len(APPENDED)
    rows = {"metrics.jsonl": spec.replicates * (g + 1) if fmt == "jsonl" else 0, "provenance.jsonl": g + 1}
    new_offsets, new_digests = [], []
    for name, off, digest in zip(APPENDED, offsets(ck).values(), digests):
        if _appended_problem(store.path / name, off, digest, rows[name]) is None:
            store.truncate(name, off)
            if (store.path / name).stat().st_size != off:
                raise Unrepairable(f"{name} could not be cut back to {off} bytes")
            new_offsets.append(off)
            new_digests.append(digest)
            continue
        text = _rebuilt_text(store, spec, name, g, ck).encode()
        if digest and sha256(text) != digest:
            raise Unrepairable(f"{name} was rebuilt from the generation files but differs from the original")
        if not digest and len(text) != off:
            raise Unrepairable(f"{name} was rebuilt from the generation files but its size differs from the original")
        store._write(name, text)
        new_offsets.append(len(text))
        new_digests.append(sha256(text))
        out.actions.append(f"rebuilt {name} from the generation files ({rows[name] or 'no'} rows, identical to the original)")
    ck["offsets"] = np.array(new_offsets, dtype=np.int64)
    ck["digests"] = np.array(new_digests)


def _rebuilt_text(store: RunStore, spec: Any, name: str, g: int, ck: dict) -> str:
    if name == "provenance.jsonl":
        from .loop import provenance_line

        lines = []
        for k in range(g + 1):
            arrays = _generation(store, k, "provenance", name)
            lines.append(dumps(provenance_line(k, dense_provenance(arrays, k))) + "\n")
        return "".join(lines)
    fmt = str(ck["metrics_format"]) if "metrics_format" in ck else "jsonl"
    if fmt != "jsonl":
        return ""
    return "".join(dumps(row) + "\n" for row in _metric_rows(store, spec, 0, g))


def _generation(store: RunStore, k: int, prefix: str, target: str) -> dict[str, np.ndarray]:
    try:
        arrays = store.read_tensors(store.generation_file(k), prefix)
    except RunDirError as exc:
        raise Unrepairable(f"{target} cannot be rebuilt: {exc}") from None
    if not arrays:
        raise Unrepairable(f"{target} cannot be rebuilt: {store.generation_file(k)} holds no {prefix} arrays "
                           "(written by version 0.1)")
    return arrays


def _metric_rows(store: RunStore, spec: Any, first: int, last: int) -> list[dict]:
    """The metric rows of generations first..last, rebuilt from the generation files."""
    stopped: dict[int, str] = {}
    rows = []
    for k in range(last + 1):
        meta = store.tensor_metadata(store.generation_file(k)) if store.has(store.generation_file(k)) else {}
        stopped.update({int(r): why for r, why in json.loads(meta.get("stopped", "{}")).items()})
        if k < first:
            continue
        arrays = _generation(store, k, "metric/", "the metric rows")
        values = {m: arrays[f"metric/{m}"] for m in spec.metrics if f"metric/{m}" in arrays}
        rows += rows_for_generation(k, values, stopped, spec.replicates)
    return rows


def _restore_parts(store: RunStore, spec: Any, ck: dict, out: Repair) -> None:
    fixed = {}
    for part, digest in parts(ck).items():
        target = store.path / part
        if target.is_file() and sha256(target.read_bytes()) == digest:
            fixed[part] = digest
            continue
        first, last = (int(x) for x in Path(part).stem.removeprefix("part-").split("-"))
        fixed[part] = store._write(part, parquet_bytes(_metric_rows(store, spec, first, last)))
        out.actions.append(f"rebuilt {part} from the generation files")
    ck["parts"] = np.array(list(fixed), dtype=str)
    ck["part_digests"] = np.array(list(fixed.values()), dtype="<U64")


def _remove_beyond(store: RunStore, g: int, kept_parts: dict[str, str], out: Repair) -> None:
    """Files written after the checkpoint: a resume writes them again."""
    removed = [k for k in store.generations() if k > g]
    for k in removed:
        (store.path / store.generation_file(k)).unlink()
    for part in part_files(store.path):
        if f"{PARTS}/{part.name}" not in kept_parts:
            part.unlink()
    for tmp in store.path.rglob(".*.tmp"):
        tmp.unlink()
    if removed:
        out.actions.append(f"removed the files of generations {removed[0]}..{removed[-1]}, after the checkpoint")


def _rewrite_manifest(store: RunStore, spec: Any, ck: dict | None, out: Repair) -> None:
    from .store import versions

    try:
        manifest = store.manifest()
    except RunDirError:
        manifest = {"started": None, "versions": versions()}
        out.actions.append("rebuilt manifest.json")
    manifest["status"] = out.status
    if ck is not None:
        g = int(ck["generation"])
        lines = store.read_jsonl("provenance.jsonl")[: g + 1]
        manifest.update(
            generations_completed=g,
            provenance=[{k: ln[k] for k in ("generation", "size", "real", "synthetic")} for ln in lines],
            stopped={str(int(r)): str(why) for r, why in zip(ck["stopped_replicates"], ck["stopped_reasons"])},
            metrics_format=str(ck["metrics_format"]) if "metrics_format" in ck else "jsonl",
        )
        if out.status != "completed":
            manifest["finished"] = None
    if out.status == "damaged":
        manifest["error"] = "; ".join(out.lost)
    else:
        manifest.pop("error", None)
    manifest["repaired"] = [*manifest.get("repaired", []), {"at": now(), "actions": out.actions, "lost": out.lost}]
    store.write_json("manifest.json", manifest)
