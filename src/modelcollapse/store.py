"""The run directory: the single source of truth for a run.

::

    DIR/config.yaml            the fully resolved spec
    DIR/manifest.json          versions, times, status, per-generation provenance summary
    DIR/metrics.jsonl          one JSON object per (replicate, generation) ...
    DIR/metrics/part-*.parquet ... or the same rows as Parquet, for runs of 100,000 rows or more
    DIR/provenance.jsonl       one line per generation: mean count of examples from each source
    DIR/real.npz               generation 0's real training set and the real held-out set
    DIR/generations/gen_000123.safetensors   fitted parameters (model/*), the generation's metric
                               values (metric/*), provenance counts (provenance/*), stopped flags, and,
                               for accumulating policies, that generation's synthetic set
    DIR/checkpoint.npz         where a resumed run picks up: generation, random-stream states, the
                               sizes and SHA-256 digests of everything written up to that point
    DIR/checkpoint.prev.npz    the checkpoint before it (a damaged checkpoint falls back to it)
    DIR/figures/*.png, DIR/report.html
    DIR/.lock                  held by the one process writing the run (pid and host inside)

Every file is written to a temporary name and renamed into place, so a killed or crashed
process never leaves a half-written file, with the permissions the user's umask gives (0644
under the usual 022). JSONL files are appended; a resume truncates them back to the offsets
recorded in the last checkpoint, after checking that what the checkpoint covers is intact
(see :mod:`.integrity`). The metric rows and provenance lines are also kept, as arrays, in the
generation files, so both can be rebuilt exactly (``modelcollapse repair``). (There is no
fsync: it tripled the wall time of a 1000-generation Gaussian run, and protects only against
power loss.)
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import platform
import re
import socket
import sys
import tempfile
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

DEPENDENCIES = ("numpy", "scipy", "scikit-learn", "pydantic", "pyyaml", "matplotlib", "rich", "pot", "safetensors",
                "pyarrow", "torch")
APPENDED = ("metrics.jsonl", "provenance.jsonl")  # files the run appends to, truncated on resume


class RunDirError(RuntimeError):
    """The run directory cannot be used as asked (not empty, not a run, in use, damaged)."""


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


def _file_mode() -> int:
    """0666 less the umask: what ``open()`` would give (``mkstemp`` makes 0600 files)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


FILE_MODE = _file_mode()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def atomic_write(path: Path, data: bytes) -> str:
    """Write ``data`` to a temporary name beside ``path`` and rename it into place; return its SHA-256."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            os.fchmod(fh.fileno(), FILE_MODE)
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return sha256(data)


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


def describe_path(path: Path) -> str | None:
    """What ``path`` is when it is not a regular file, in words (None for a regular file)."""
    import stat

    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return "does not exist"
    except PermissionError:
        return "cannot be read (permission denied)"
    except OSError as exc:
        return f"cannot be read ({exc.strerror or exc})"
    if stat.S_ISDIR(mode):
        return "is a directory"
    if stat.S_ISSOCK(mode):
        return "is a socket"
    if stat.S_ISFIFO(mode):
        return "is a named pipe"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "is a device"
    if not os.access(path, os.R_OK):
        return "cannot be read (permission denied)"
    return None


class RunStore:
    """The files of one run directory.

    ``writable=False`` gives a reader whose writes do nothing: the extra processes of a
    multi-GPU launch compute everything the main process does but leave the files to it.
    """

    def __init__(self, path: Path, *, writable: bool = True) -> None:
        self.path = Path(path)
        self.writable = writable
        self._hashes: dict[str, Any] = {}  # running SHA-256 of each appended file (what a checkpoint covers)
        self._lock_fd: int | None = None
        self.ledger: Any = None  # what the last checkpoint recorded (integrity.Ledger), set on resume
        self.stale_owner: str | None = None

    # -- creating and opening ------------------------------------------------------------
    @staticmethod
    def check_new(path: Path) -> None:
        """Refuse, before any work, an ``--out`` that is not an empty or missing directory."""
        what = describe_path(path)
        if what not in (None, "does not exist", "is a directory"):
            raise RunDirError(f"--out {str(path)!r} {what}; give a directory to write the run into")
        if what is None:
            raise RunDirError(f"--out {str(path)!r} is a file, not a directory; choose another --out")
        if what == "is a directory" and any(path.iterdir()):
            raise RunDirError(
                f"output directory {str(path)!r} is not empty; pass --resume to continue the run in it, "
                "or choose another --out"
            )

    @classmethod
    def make_new(cls, path: Path) -> None:
        """Create ``path`` for a new run or study: refused when it holds anything (see :meth:`check_new`)."""
        cls.check_new(path)
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise RunDirError(f"cannot create --out {str(path)!r}: {exc.strerror or exc}") from None

    @classmethod
    def create(cls, path: Path | str, config_yaml: str, *, writable: bool = True) -> "RunStore":
        """A new run directory (locked by this process); refused when ``path`` holds anything."""
        path = Path(path)
        if not writable:
            return cls(path, writable=False)
        cls.make_new(path)
        store = cls(path)
        store.lock()
        store.write_text("config.yaml", config_yaml)
        # run_id: who the run is to an experiment tracker, kept across resumes (not a source of randomness)
        store.write_json("manifest.json", {"status": "running", "started": now(), "run_id": uuid.uuid4().hex,
                                           **{"versions": versions()}})
        for name in APPENDED:
            store.start_digest(name)
        return store

    @classmethod
    def open(cls, path: Path | str, *, writable: bool = True) -> "RunStore":
        path = Path(path)
        what = describe_path(path)
        if what == "does not exist":
            raise RunDirError(f"{str(path)!r} does not exist")
        if what != "is a directory":
            raise RunDirError(f"{str(path)!r} {what or 'is a file'}, not a run directory")
        if not (path / "config.yaml").is_file():
            raise RunDirError(f"{str(path)!r} is not a run directory (no config.yaml)")
        return cls(path, writable=writable)

    # -- the lock: one writing process per run directory -----------------------------------
    def lock(self) -> None:
        """Hold ``.lock`` until :meth:`unlock` or the process ends (the kernel drops it even after a
        ``kill -9``). A second writer is refused, naming the process that holds it."""
        if not self.writable or self._lock_fd is not None:
            return
        import fcntl

        target = self.path / ".lock"
        fd = os.open(target, os.O_RDWR | os.O_CREAT, FILE_MODE)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            owner = _read_owner(fd)
            os.close(fd)
            raise RunDirError(f"{str(self.path)!r} is in use by another process ({owner}); wait for it to end, "
                              "or stop it first") from None
        self.stale_owner = _read_owner(fd) if os.fstat(fd).st_size else None  # a writer that died without unlocking
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "since": now(),
                                  "command": " ".join(sys.argv)[:300]}).encode(), 0)
        self._lock_fd = fd

    def unlock(self) -> None:
        if self._lock_fd is not None:
            os.ftruncate(self._lock_fd, 0)  # an empty lock file: the last writer ended cleanly
            os.close(self._lock_fd)
            self._lock_fd = None

    # -- writing -------------------------------------------------------------------------
    def _write(self, name: str, data: bytes) -> str:
        return atomic_write(self.path / name, data) if self.writable else ""

    def write_text(self, name: str, text: str) -> str:
        return self._write(name, text.encode())

    def write_json(self, name: str, obj: Any) -> None:
        self.write_text(name, json.dumps(jsonable(obj), indent=1, allow_nan=True).replace("Infinity", "1e999") + "\n")

    def write_npz(self, name: str, arrays: dict[str, np.ndarray]) -> str:
        buf = io.BytesIO()
        np.savez(buf, **arrays)  # uncompressed: fitted parameters are random floats, which barely compress
        return self._write(name, buf.getvalue())

    def write_tensors(self, name: str, arrays: dict[str, np.ndarray], metadata: dict[str, str] | None = None) -> str:
        """Arrays as a safetensors file: a flat header plus raw bytes, no code on load. Returns its SHA-256."""
        import safetensors.numpy as safetensors_numpy

        data = safetensors_numpy.save({k: np.ascontiguousarray(v) for k, v in arrays.items()}, metadata=metadata)
        return self._write(name, data)

    def write_checkpoint(self, arrays: dict[str, np.ndarray]) -> None:
        """The new checkpoint; the one it replaces becomes ``checkpoint.prev.npz``."""
        if not self.writable:
            return
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        current = self.path / "checkpoint.npz"
        if current.exists():
            os.replace(current, self.path / "checkpoint.prev.npz")
        atomic_write(current, buf.getvalue())

    def start_digest(self, name: str, upto: int | None = None) -> None:
        """Begin the running digest of an appended file, over its first ``upto`` bytes (all of them)."""
        h = hashlib.sha256()
        target = self.path / name
        if target.exists():
            with open(target, "rb") as fh:
                remaining = target.stat().st_size if upto is None else upto
                while remaining > 0:
                    chunk = fh.read(min(remaining, 1 << 22))
                    if not chunk:
                        break
                    h.update(chunk)
                    remaining -= len(chunk)
        self._hashes[name] = h

    def digest(self, name: str) -> str:
        return self._hashes[name].hexdigest() if name in self._hashes else ""

    def append_jsonl(self, name: str, rows: Iterable[dict], *, clean: bool = False) -> int:
        """Append rows and return the file's new size (the offset a checkpoint records).

        ``clean=True`` promises the rows hold only JSON-ready Python values (no NaN, no
        numpy scalars), which skips the slow recursive conversion on the hot path.
        """
        if not self.writable:
            return 0
        data = "".join(dumps(r if clean else jsonable(r)) + "\n" for r in rows).encode()
        target = self.path / name
        fresh = not target.exists()
        with open(target, "ab") as fh:
            if fresh:
                os.fchmod(fh.fileno(), FILE_MODE)
            fh.write(data)
            if name in self._hashes:
                self._hashes[name].update(data)
            return fh.tell()

    def truncate(self, name: str, offset: int) -> None:
        """Cut an appended file back to ``offset`` bytes (never lengthening it: that would pad with NULs)."""
        target = self.path / name
        if not self.writable:
            return
        if not target.exists():
            if offset:
                raise RunDirError(f"{name} is missing but the checkpoint covers {offset} bytes of it")
            target.touch(mode=FILE_MODE)
        size = target.stat().st_size
        if size < offset:
            raise RunDirError(f"{name} holds {size} bytes but the checkpoint covers {offset}: it was cut short")
        with open(target, "r+b") as fh:
            fh.truncate(offset)

    def update_manifest(self, **fields: Any) -> dict:
        if not self.writable:
            return {}
        try:
            manifest = self.manifest()
        except RunDirError:
            manifest = {}
        manifest.update(fields)
        manifest["updated"] = now()
        self.write_json("manifest.json", manifest)
        return manifest

    # -- reading -------------------------------------------------------------------------
    def manifest(self) -> dict:
        target = self.path / "manifest.json"
        try:
            data = json.loads(target.read_text())
        except FileNotFoundError:
            raise RunDirError(f"{target} is missing") from None
        except (OSError, ValueError) as exc:
            raise RunDirError(f"{target} is unreadable: {exc}") from None
        if not isinstance(data, dict):
            raise RunDirError(f"{target} does not hold a JSON object")
        return data

    def config_text(self) -> str:
        try:
            return (self.path / "config.yaml").read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise RunDirError(f"{self.path / 'config.yaml'} is unreadable: {exc}") from None

    def read_npz(self, name: str) -> dict[str, np.ndarray]:
        try:
            with np.load(self.path / name, allow_pickle=False) as z:
                return {k: z[k] for k in z.files}
        except FileNotFoundError:
            raise RunDirError(f"{self.path / name} is missing") from None
        except Exception as exc:  # zip, pickle-refusal and value errors all mean "not what we wrote"
            raise RunDirError(f"{self.path / name} is damaged: {type(exc).__name__}: {exc}") from None

    def read_tensors(self, name: str, prefix: str = "") -> dict[str, np.ndarray]:
        """The arrays of a safetensors file whose names start with ``prefix`` (read lazily)."""
        from safetensors import safe_open

        try:
            with safe_open(self.path / name, framework="numpy") as fh:
                return {k: fh.get_tensor(k) for k in fh.keys() if k.startswith(prefix)}
        except FileNotFoundError:
            raise RunDirError(f"{self.path / name} is missing") from None
        except Exception as exc:  # a truncated or overwritten file: safetensors raises its own errors
            raise RunDirError(f"{self.path / name} is damaged: {type(exc).__name__}: {exc}") from None

    def tensor_names(self, name: str, prefix: str = "") -> list[str]:
        """Names of the arrays in a safetensors file (its header only is read)."""
        from safetensors import safe_open

        try:
            with safe_open(self.path / name, framework="numpy") as fh:
                return [k for k in fh.keys() if k.startswith(prefix)]
        except Exception as exc:
            raise RunDirError(f"{self.path / name} is damaged: {type(exc).__name__}: {exc}") from None

    def tensor_metadata(self, name: str) -> dict[str, str]:
        from safetensors import safe_open

        try:
            with safe_open(self.path / name, framework="numpy") as fh:
                return dict(fh.metadata() or {})
        except Exception as exc:
            raise RunDirError(f"{self.path / name} is damaged: {type(exc).__name__}: {exc}") from None

    def has(self, name: str) -> bool:
        return (self.path / name).exists()

    def read_jsonl(self, name: str) -> list[dict]:
        """Rows of a JSONL file; for the metric rows of any run (JSONL or Parquet) use :meth:`metric_rows`."""
        target = self.path / name
        if not target.exists():
            return []
        with open(target) as fh:
            return [json.loads(line) for line in fh if line.strip()]

    def metric_rows(self) -> list[dict]:
        """One dict per (replicate, generation), whichever format the run keeps its metrics in."""
        from .results import read_metric_rows

        return read_metric_rows(self.path)

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

    def provenance(self, g: int) -> np.ndarray:
        """Generation g's provenance counts, (R, g + 1): column 0 real, column j + 1 from generation j."""
        arrays = self.read_tensors(self.generation_file(g), "")
        return dense_provenance(arrays, g, len(arrays["stopped"]) if "stopped" in arrays else None)


STATS = "stats/"  # checkpoint arrays of an accumulating chain's running statistics


def sparse_provenance(counts: np.ndarray) -> dict[str, np.ndarray]:
    """Provenance as stored: the source columns any replicate drew from, and their counts, in the
    smallest integer type that holds them; one row when every replicate has the same counts (an
    accumulating policy). A ``replace`` chain stores one column, so storage grows with the
    generations, not their square as the dense (R, g + 1) matrix did."""
    if counts.ndim == 2 and counts.strides[0] == 0:  # one row broadcast to every replicate: no need to compare
        counts = counts[:1]
    sources = np.flatnonzero(counts.any(axis=0)).astype(np.int64)
    used = counts[:, sources]
    if len(used) > 1 and (used == used[:1]).all():
        used = used[:1]
    return {"provenance/sources": sources,
            "provenance/counts": used.astype(np.min_scalar_type(int(used.max()) if used.size else 0))}


def dense_provenance(arrays: dict[str, np.ndarray], g: int, replicates: int | None = None) -> np.ndarray:
    """(R, g + 1) counts from a generation file of either format (version 0.1 stored them dense);
    a single stored row stands for every replicate (``replicates`` of them, or one)."""
    if "provenance" in arrays:
        return np.asarray(arrays["provenance"])
    sources, counts = arrays["provenance/sources"], arrays["provenance/counts"].astype(np.int64)
    rows = counts.shape[0] if counts.shape[0] > 1 or replicates is None else replicates
    out = np.zeros((rows, g + 1), dtype=np.int64)
    out[:, sources] = counts
    return out


def _read_owner(fd: int) -> str:
    try:
        info = json.loads(os.pread(fd, 4096, 0).decode() or "{}")
    except (OSError, ValueError):
        return "owner unknown"
    return f"pid {info.get('pid', '?')} on {info.get('host', '?')} since {info.get('since', '?')}"


@contextmanager
def locked(store: RunStore) -> Iterator[RunStore]:
    store.lock()
    try:
        yield store
    finally:
        store.unlock()


def stderr_is_tty() -> bool:
    return sys.stderr.isatty()
