"""A run's metric rows: written as JSON lines or as Parquet, read back the same way from either.

Every (replicate, generation) is one row: ``{"replicate": r, "generation": g, "<metric>": value,
...}``, with ``"stopped": reason`` once a replicate has stopped (its values are then null). A
missing value (NaN in memory) is ``null``; an infinite one (a KL after the variance hit zero)
is stored as infinity: ``1e999`` in JSON, which Python, pandas and JavaScript read back as
infinity, and IEEE infinity in Parquet.

Runs planned with fewer than :data:`PARQUET_ROWS` rows append to ``metrics.jsonl`` (readable
with any tool, streamed as the run goes). Larger ones write ``metrics/part-*.parquet``, one
part per checkpoint, each written whole and renamed into place: 200,000 rows take about a
quarter of the disk and load about fifty times faster. The values are also kept in each
generation file (``metric/<name>``), from which :func:`rows_for_generation` rebuilds the rows
exactly (``modelcollapse repair``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .store import RunDirError, RunStore, dumps

#: Runs planned with at least this many metric rows (replicates x generations) keep them in Parquet.
PARQUET_ROWS = 100_000
PARTS = "metrics"  # folder of the Parquet parts


def metrics_format(replicates: int, generations: int) -> str:
    return "parquet" if replicates * (generations + 1) >= PARQUET_ROWS else "jsonl"


def json_column(values: np.ndarray) -> list:
    """A metric's per-replicate values as JSON-ready lists: NaN (missing) becomes None."""
    values = np.asarray(values, dtype=float)
    finite = ~np.isnan(values)
    out = values.tolist()
    if finite.all():
        return out
    if values.ndim == 1:
        return [v if ok else None for v, ok in zip(out, finite)]
    return [[v if ok else None for v, ok in zip(row, oks)] for row, oks in zip(out, finite)]


def rows_for_generation(g: int, values: dict[str, np.ndarray], stopped: dict[int, str], replicates: int) -> list[dict]:
    """The JSON rows of generation g, in replicate order (the same text however they are rebuilt)."""
    columns = {name: json_column(v) for name, v in values.items()}
    rows = []
    for r in range(replicates):
        row: dict[str, Any] = {"replicate": r, "generation": g}
        why = stopped.get(r)
        for name, column in columns.items():
            row[name] = column[r] if why is None else None
        if why is not None:
            row["stopped"] = why
        rows.append(row)
    return rows


class MetricWriter:
    """Appends each generation's rows to ``metrics.jsonl``, or buffers them for the next Parquet part."""

    def __init__(self, store: RunStore, fmt: str, parts: dict[str, str] | None = None) -> None:
        self.store, self.format = store, fmt
        self.parts: dict[str, str] = dict(parts or {})  # part written so far (relative name) -> its SHA-256
        self._buffer: list[dict] = []

    def add(self, g: int, values: dict[str, np.ndarray], stopped: dict[int, str], replicates: int) -> None:
        rows = rows_for_generation(g, values, stopped, replicates)
        if self.format == "jsonl":
            self.store.append_jsonl("metrics.jsonl", rows, clean=True)
        else:
            self._buffer.extend(rows)

    def flush(self) -> None:
        """Write the buffered rows as one Parquet part (at a checkpoint; JSONL rows are already on disk)."""
        if self.format != "parquet" or not self._buffer or not self.store.writable:
            return
        first, last = self._buffer[0]["generation"], self._buffer[-1]["generation"]
        name = f"{PARTS}/part-{first:06d}-{last:06d}.parquet"
        self.parts[name] = self.store._write(name, parquet_bytes(self._buffer))
        self._buffer = []


def parquet_bytes(rows: list[dict]) -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    names = [k for k in rows[0] if k != "stopped"]
    columns = {}
    for name in names:
        column = [r.get(name) for r in rows]
        first = next((v for v in column if v is not None), None)
        if name in ("replicate", "generation"):
            columns[name] = pa.array(column, type=pa.int32())
        elif isinstance(first, list):  # a vector metric: NaN inside stays NaN (Parquet floats have it)
            columns[name] = pa.array([None if v is None else [np.nan if x is None else x for x in v] for v in column],
                                     type=pa.list_(pa.float64()))
        else:
            columns[name] = pa.array(column, type=pa.float64())
    columns["stopped"] = pa.array([r.get("stopped") for r in rows], type=pa.string())
    sink = pa.BufferOutputStream()
    pq.write_table(pa.table(columns), sink, compression="zstd")
    return sink.getvalue().to_pybytes()


@dataclass
class MetricColumns:
    """The metric rows of a run as arrays: one entry per row."""

    generation: np.ndarray
    replicate: np.ndarray
    values: dict[str, np.ndarray] = field(default_factory=dict)  # (rows,) or (rows, k); NaN where missing
    stopped: list[tuple[int, int, str]] = field(default_factory=list)  # (replicate, generation, reason)


def part_files(path: Path) -> list[Path]:
    return sorted((Path(path) / PARTS).glob("part-*.parquet"))


def read_metric_columns(path: Path, *, lenient: bool = True) -> MetricColumns:
    """All metric rows of a run directory, from JSONL or Parquet. ``lenient`` skips a partly written
    last JSON line (a crash in the middle of an append) instead of failing."""
    path = Path(path)
    if part_files(path):
        return _parquet_columns(path)
    return _columns(_jsonl_rows(path / "metrics.jsonl", lenient))


def read_metric_rows(path: Path) -> list[dict]:
    """The same rows as dicts (``None`` where a value is missing)."""
    path = Path(path)
    if not part_files(path):
        return _jsonl_rows(path / "metrics.jsonl", lenient=True)
    cols = _parquet_columns(path)
    stopped = {(r, g): why for r, g, why in cols.stopped}
    as_json = {name: json_column(values) for name, values in cols.values.items()}
    rows = []
    for i, (g, r) in enumerate(zip(cols.generation.tolist(), cols.replicate.tolist())):
        why = stopped.get((r, g))
        row: dict[str, Any] = {"replicate": r, "generation": g}
        row.update({name: (column[i] if why is None else None) for name, column in as_json.items()})
        if why is not None:
            row["stopped"] = why
        rows.append(row)
    return rows


def _jsonl_rows(target: Path, lenient: bool) -> list[dict]:
    if not target.exists():
        return []
    lines = [ln for ln in target.read_text(errors="replace").splitlines() if ln.strip()]
    try:
        return json.loads("[" + ",".join(lines) + "]")  # one parse: fast for 200,000 rows
    except json.JSONDecodeError:
        if not lenient:
            raise
    return [row for row in map(_loads, lines) if isinstance(row, dict)]


def _loads(line: str) -> Any:
    try:
        return json.loads(line)
    except json.JSONDecodeError:
        return None


RESERVED = ("replicate", "generation", "stopped")


def _columns(rows: list[dict]) -> MetricColumns:
    rows = [r for r in rows if isinstance(r.get("generation"), int) and isinstance(r.get("replicate"), int)]
    gen = np.fromiter((r["generation"] for r in rows), dtype=np.int64, count=len(rows))
    rep = np.fromiter((r["replicate"] for r in rows), dtype=np.int64, count=len(rows))
    out = MetricColumns(gen, rep)
    names = list(dict.fromkeys(k for r in rows[:1] for k in r if k not in RESERVED))
    for name in names:
        column = [r.get(name) for r in rows]
        first = next((v for v in column if v is not None), None)
        if first is None:
            continue
        if isinstance(first, list):  # a vector metric; JSON null stands for NaN inside it too
            blank = [None] * len(first)
            out.values[name] = np.array([v if v is not None else blank for v in column], dtype=float)
        else:
            out.values[name] = np.array(column, dtype=float)
    out.stopped = [(r["replicate"], r["generation"], str(r["stopped"])) for r in rows if "stopped" in r]
    return out


def _parquet_columns(path: Path) -> MetricColumns:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        # partitioning=None: a folder name like "train_size=10" (a study's cell) is not a Hive partition key.
        table = pa.concat_tables([pq.read_table(p, partitioning=None) for p in part_files(path)])
    except Exception as exc:  # a damaged part: say which run, the integrity check says which part
        raise RunDirError(f"the Parquet metrics of {path} are damaged: {type(exc).__name__}: {exc}") from None
    out = MetricColumns(table["generation"].to_numpy().astype(np.int64), table["replicate"].to_numpy().astype(np.int64))
    for name in table.column_names:
        if name in RESERVED:
            continue
        column = table[name]
        if pa.types.is_list(column.type):
            width = max((len(v) for v in column.to_pylist() if v is not None), default=0)
            out.values[name] = np.array([v if v is not None else [np.nan] * width for v in column.to_pylist()],
                                        dtype=float)
        else:
            out.values[name] = column.to_numpy(zero_copy_only=False).astype(float)
    reasons = table["stopped"].to_pylist()
    out.stopped = [(int(r), int(g), why) for r, g, why in zip(out.replicate, out.generation, reasons) if why is not None]
    return out


def jsonl_text(rows: list[dict]) -> str:
    return "".join(dumps(r) + "\n" for r in rows)
