"""The run directory: the single source of truth for a run.

::

    DIR/config.yaml            the fully resolved spec
    DIR/manifest.json          versions, times, status, per-generation provenance summary
    DIR/metrics.jsonl          one JSON object per (replicate, generation)
    DIR/provenance.jsonl       one line per generation: mean count of examples from each source
    DIR/real.npz               generation 0's real training set and the real held-out set
    DIR/generations/gen_000123.safetensors   fitted parameters (model/*), per-replicate provenance counts,
                               and, for accumulating policies, that generation's synthetic set
    DIR/checkpoint.npz         where a resumed run picks up: generation, random-stream states,
                               byte offsets of the JSONL files
    DIR/figures/*.png, DIR/report.html

Every file is written to a temporary name and renamed into place, so a killed or crashed
process never leaves a half-written file. (There is no fsync: it tripled the wall time of
a 1000-generation Gaussian run, and protects only against power loss.) JSONL files are appended, and a resume truncates them back
to the offsets recorded in the last checkpoint.
"""

from __future__ import annotations

import io
import json
import math
import os
import platform
import re
import sys
import tempfile
from collections.abc import Iterable
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import safetensors.numpy as safetensors_numpy
from safetensors import safe_open

DEPENDENCIES = ("numpy", "scipy", "scikit-learn", "pydantic", "pyyaml", "matplotlib", "rich", "pot", "safetensors", "torch")


class RunDirError(RuntimeError):
    """The run directory cannot be used as asked (not empty, not a run, nothing to resume)."""


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def versions() -> dict[str, str]:
    out = {"python": platform.python_version(), "platform": platform.platform()}
    for name in ("modelcollapse", *DEPENDENCIES):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to a temporary name beside ``path`` and rename it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


_INFINITY = re.compile(r"(?<=[\[:,\s])(-?)Infinity(?=[,\]}])")  # a number, never inside a string


def dumps(obj: Any) -> str:
    """JSON text in which infinities are written as ``1e999`` (``-1e999``).

    JSON has no infinity; ``1e999`` is a valid JSON number that Python, pandas and
    JavaScript all read back as infinity, so an infinite KL stays distinguishable from a
    missing value (null). NaN must already have been turned into None.
    """
    text = json.dumps(obj, allow_nan=True)
    return _INFINITY.sub(r"\g<1>1e999", text) if "Infinity" in text else text


def jsonable(value: Any) -> Any:
    """Numbers and arrays as JSON-ready values: NaN becomes null (missing), infinities stay."""
    if isinstance(value, np.ndarray):
        return [jsonable(v) for v in value.tolist()]
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (np.floating, float)):
        return None if math.isnan(value) else float(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    return value


class RunStore:
    """The files of one run directory.

    ``writable=False`` gives a reader whose writes do nothing: the extra processes of a
    multi-GPU launch compute everything the main process does but leave the files to it.
    """

    def __init__(self, path: Path, *, writable: bool = True) -> None:
        self.path = Path(path)
        self.writable = writable

    # -- creating and opening ------------------------------------------------------------
    @classmethod
    def create(cls, path: Path | str, config_yaml: str, *, writable: bool = True) -> "RunStore":
        path = Path(path)
        if not writable:
            return cls(path, writable=False)
        if path.exists() and (not path.is_dir() or any(path.iterdir())):
            raise RunDirError(
                f"output directory {str(path)!r} is not empty; pass --resume to continue the run in it, "
                "or choose another --out"
            )
        store = cls(path)
        store.write_text("config.yaml", config_yaml)
        store.write_json("manifest.json", {"status": "running", "started": now(), **{"versions": versions()}})
        return store

    @classmethod
    def open(cls, path: Path | str, *, writable: bool = True) -> "RunStore":
        path = Path(path)
        if not (path / "config.yaml").is_file():
            raise RunDirError(f"{str(path)!r} is not a run directory (no config.yaml)")
        return cls(path, writable=writable)

    # -- writing -------------------------------------------------------------------------
    def _write(self, name: str, data: bytes) -> None:
        if self.writable:
            atomic_write(self.path / name, data)

    def write_text(self, name: str, text: str) -> None:
        self._write(name, text.encode())

    def write_json(self, name: str, obj: Any) -> None:
        self.write_text(name, json.dumps(jsonable(obj), indent=1, allow_nan=True).replace("Infinity", "1e999") + "\n")

    def write_npz(self, name: str, arrays: dict[str, np.ndarray]) -> None:
        buf = io.BytesIO()
        np.savez(buf, **arrays)  # uncompressed: fitted parameters are random floats, which barely compress
        self._write(name, buf.getvalue())

    def write_tensors(self, name: str, arrays: dict[str, np.ndarray]) -> None:
        """Arrays as a safetensors file: a flat header plus raw bytes, no code on load."""
        self._write(name, safetensors_numpy.save({k: np.ascontiguousarray(v) for k, v in arrays.items()}))

    def read_tensors(self, name: str, prefix: str = "") -> dict[str, np.ndarray]:
        """The arrays of a safetensors file whose names start with ``prefix`` (read lazily)."""
        with safe_open(self.path / name, framework="numpy") as fh:
            return {k: fh.get_tensor(k) for k in fh.keys() if k.startswith(prefix)}

    def append_jsonl(self, name: str, rows: Iterable[dict], *, clean: bool = False) -> int:
        """Append rows and return the file's new size (the offset a checkpoint records).

        ``clean=True`` promises the rows hold only JSON-ready Python values (no NaN, no
        numpy scalars), which skips the slow recursive conversion on the hot path.
        """
        if not self.writable:
            return 0
        text = "".join(dumps(r if clean else jsonable(r)) + "\n" for r in rows)
        with open(self.path / name, "ab") as fh:
            fh.write(text.encode())
            return fh.tell()

    def truncate(self, name: str, offset: int) -> None:
        target = self.path / name
        if not self.writable:
            return
        if not target.exists():
            target.touch()
        with open(target, "r+b") as fh:
            fh.truncate(offset)

    def update_manifest(self, **fields: Any) -> dict:
        if not self.writable:
            return {}
        manifest = self.manifest()
        manifest.update(fields)
        manifest["updated"] = now()
        self.write_json("manifest.json", manifest)
        return manifest

    # -- reading -------------------------------------------------------------------------
    def manifest(self) -> dict:
        return json.loads((self.path / "manifest.json").read_text())

    def config_text(self) -> str:
        return (self.path / "config.yaml").read_text()

    def read_npz(self, name: str) -> dict[str, np.ndarray]:
        with np.load(self.path / name, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}

    def has(self, name: str) -> bool:
        return (self.path / name).exists()

    def read_jsonl(self, name: str) -> list[dict]:
        target = self.path / name
        if not target.exists():
            return []
        with open(target) as fh:
            return [json.loads(line) for line in fh if line.strip()]

    @staticmethod
    def generation_file(g: int) -> str:
        return f"generations/gen_{g:06d}.safetensors"

    def generations(self) -> list[int]:
        """Generations with a parameter file, in order."""
        found = (p.name.removeprefix("gen_").removesuffix(".safetensors") for p in (self.path / "generations").glob("gen_*.safetensors"))
        return sorted(int(g) for g in found if g.isdigit())

    def generation(self, g: int) -> dict[str, np.ndarray]:
        return self.read_tensors(self.generation_file(g))

    def model_state(self, g: int) -> dict[str, np.ndarray]:
        return {k.removeprefix("model/"): v for k, v in self.read_tensors(self.generation_file(g), "model/").items()}


def stderr_is_tty() -> bool:
    return sys.stderr.isatty()
