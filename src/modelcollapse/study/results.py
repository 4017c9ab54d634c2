"""A study's results as tables: every metric row of every cell, and an aggregate per setting.

``results.parquet``: one row per (cell, replicate, generation), with the cell's name, setting,
variant, seed and grid values as columns, every scalar metric a float column and every vector
metric a list column (cells of different families leave the other's columns null).

``aggregate.parquet``: one row per (setting, generation, scalar metric): the number of values
pooled over the setting's replicates and seeds, their mean, median, 5% and 95% quantiles, and a
95% percentile-bootstrap interval for the mean (:data:`BOOTSTRAP` resamples, seed 0; the
resampling weights are drawn once per setting and shared by its generations, which turns the
bootstrap into one matrix product).

:func:`load_results` reads a study or a single run directory into a pandas DataFrame, reading
only the columns and generations asked for.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from ..results import RESERVED, part_files, read_metric_columns
from ..store import atomic_write
from .index import StudyDir, is_study_dir

RESULTS, AGGREGATE = "results.parquet", "aggregate.parquet"
TABLES = "tables"  # one Parquet table per finished cell, written by its worker (a cache: rebuilt from the cell)
BOOTSTRAP = 1000
KEYS = ("cell", "setting", "variant", "seed")


# -- one run ----------------------------------------------------------------------------------------
def run_table(path: Path, columns: list[str] | None = None, generations: Iterable[int] | None = None) -> Any:
    """A run directory's metric rows as a pyarrow Table (replicate, generation, metrics..., stopped)."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    path = Path(path)
    gens = None if generations is None else sorted(set(int(g) for g in generations))
    parts = part_files(path)
    if parts:
        wanted = None if columns is None else list(dict.fromkeys(["replicate", "generation", *columns, "stopped"]))
        tables = []
        for part in parts:
            if gens is not None:  # parts are named by their generation range: skip whole files
                first, last = (int(x) for x in part.stem.split("-")[1:3])
                if not any(first <= g <= last for g in gens):
                    continue
            schema = pq.read_schema(part)
            names = None if wanted is None else [c for c in wanted if c in schema.names]
            tables.append(pq.read_table(part, columns=names, partitioning=None))  # "k=v" folders are no partitions
        table = pa.concat_tables(tables, promote_options="default") if tables else _empty()
    else:
        table = _columns_table(read_metric_columns(path), columns)
    if gens is not None and table.num_rows:
        table = table.filter(pc.is_in(table["generation"], value_set=pa.array(gens, type=table["generation"].type)))
    return table


def _empty() -> Any:
    import pyarrow as pa

    return pa.table({"replicate": pa.array([], pa.int32()), "generation": pa.array([], pa.int32())})


def _columns_table(cols: Any, columns: list[str] | None) -> Any:
    import pyarrow as pa

    out: dict[str, Any] = {"replicate": pa.array(cols.replicate.astype(np.int32)),
                           "generation": pa.array(cols.generation.astype(np.int32))}
    for name, values in cols.values.items():
        if columns is not None and name not in columns:
            continue
        if values.ndim == 2:
            out[name] = pa.array(list(values), type=pa.list_(pa.float64()))
        else:
            out[name] = pa.array(values, type=pa.float64())
    stopped = {(r, g): why for r, g, why in cols.stopped}
    out["stopped"] = pa.array([stopped.get((r, g)) for r, g in zip(cols.replicate.tolist(), cols.generation.tolist())],
                              type=pa.string())
    return pa.table(out)


# -- a study ------------------------------------------------------------------------------------------
def _constant(value: Any, n: int) -> Any:
    import pyarrow as pa

    if isinstance(value, bool):
        return pa.array([value] * n, pa.bool_())
    if isinstance(value, int):
        return pa.array([value] * n, pa.int64())
    if isinstance(value, float):
        return pa.array([value] * n, pa.float64())
    if value is None:
        return pa.nulls(n, pa.string())
    text = value if isinstance(value, str) else json.dumps(value)
    return pa.array([text] * n, pa.string())


def _axis_types(index: dict) -> dict[str, str]:
    """One type per grid column: numbers stay numbers unless a cell's value is text or a structure."""
    kinds: dict[str, set[str]] = {}
    for entry in index["cells"]:
        for key, value in entry["values"].items():
            kinds.setdefault(key, set()).add("number" if isinstance(value, (int, float)) and not isinstance(value, bool)
                                             else "str")
    return {k: ("number" if v == {"number"} else "str") for k, v in kinds.items()}


def _axis_value(value: Any, kind: str) -> Any:
    if kind == "number":
        return float(value)
    return value if isinstance(value, str) else json.dumps(value)


def study_table(path: Path, columns: list[str] | None = None, generations: Iterable[int] | None = None,
                cells: Iterable[str] | None = None) -> Any:
    """Every cell's rows (those that have any) as one Table, with the cell's keys and grid values."""
    import pyarrow as pa

    index = StudyDir.open(path).read()
    types = _axis_types(index)
    wanted = None if cells is None else set(cells)
    tables = []
    for entry in index["cells"]:
        if wanted is not None and entry["name"] not in wanted and entry["setting"] not in wanted:
            continue
        cell_dir = Path(path) / entry["path"]
        if not (cell_dir / "config.yaml").is_file():
            continue
        cached = Path(path) / TABLES / f"{entry['name']}.parquet"
        if _fresh_table(cached, cell_dir):
            table = _read_table(cached, columns, generations)
        else:
            table = run_table(cell_dir, columns, generations)
        n = table.num_rows
        if not n:
            continue
        head = {"cell": _constant(entry["name"], n), "setting": _constant(entry["setting"], n),
                "variant": pa.array([entry.get("variant")] * n, pa.string()), "seed": _constant(int(entry["seed"]), n)}
        for key, kind in types.items():
            value = entry["values"].get(key)
            head[key] = _constant(None if value is None else _axis_value(value, kind), n)
            if kind == "number":
                head[key] = head[key].cast(pa.float64())
        for name, column in head.items():
            table = table.append_column(name, column) if name not in table.column_names else table
        tables.append(table)
    if not tables:
        return _empty()
    table = pa.concat_tables(tables, promote_options="permissive")
    front = [*KEYS, *types, "replicate", "generation"]
    return table.select([*front, *[c for c in table.column_names if c not in front]])


def save_cell_table(cell_dir: Path, target: Path) -> None:
    """A finished cell's rows as Parquet beside the study's tables: written by the worker that ran the cell,
    so that the study's tables are put together from ready parts instead of parsing every cell's rows."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    sink = pa.BufferOutputStream()
    pq.write_table(run_table(cell_dir), sink, compression="zstd")
    target.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(target, sink.getvalue().to_pybytes())


def _fresh_table(cached: Path, cell_dir: Path) -> bool:
    """The worker's table is newer than the cell's manifest (a cell resumed or extended since has moved on)."""
    try:
        return cached.stat().st_mtime >= (cell_dir / "manifest.json").stat().st_mtime
    except OSError:
        return False


def _read_table(cached: Path, columns: list[str] | None, generations: Iterable[int] | None) -> Any:
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    names = None
    if columns is not None:
        have = pq.read_schema(cached).names
        names = [c for c in dict.fromkeys(["replicate", "generation", *columns, "stopped"]) if c in have]
    table = pq.read_table(cached, columns=names, partitioning=None)
    if generations is not None:
        gens = pa.array(sorted({int(g) for g in generations}), type=table["generation"].type)
        table = table.filter(pc.is_in(table["generation"], value_set=gens))
    return table


def write_results(path: Path | str) -> Path:
    """Write ``results.parquet`` and ``aggregate.parquet`` into a study directory (atomically)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = Path(path)
    table = study_table(path)
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression="zstd")
    atomic_write(path / RESULTS, sink.getvalue().to_pybytes())
    agg = aggregate(table, StudyDir.open(path).read())
    sink = pa.BufferOutputStream()
    pq.write_table(pa.Table.from_pandas(agg, preserve_index=False), sink, compression="zstd")
    atomic_write(path / AGGREGATE, sink.getvalue().to_pybytes())
    return path / RESULTS


def scalar_metrics(table: Any, axes: Iterable[str] = ()) -> list[str]:
    """The float columns that are metrics (not the cell keys or the grid values)."""
    import pyarrow as pa

    skip = {*KEYS, *RESERVED, *axes}
    return [f.name for f in table.schema if f.name not in skip and pa.types.is_floating(f.type)]


def bootstrap_mean(values: np.ndarray, rng: np.random.Generator, resamples: int = BOOTSTRAP) -> tuple[np.ndarray, np.ndarray]:
    """95% percentile-bootstrap interval of the mean of each row of ``values`` (rows, n), NaN ignored.

    The same resampling weights (multinomial counts) serve every row: one matrix product instead of
    ``rows x resamples`` means. A row with an infinite value gets NaN (its mean is infinite)."""
    rows, n = values.shape
    lo, hi = np.full(rows, np.nan), np.full(rows, np.nan)
    if n == 0:
        return lo, hi
    weights = rng.multinomial(n, np.full(n, 1.0 / n), size=resamples).astype(float)  # (B, n)
    present = np.isfinite(values)
    filled = np.where(present, values, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        means = (weights @ filled.T) / (weights @ present.T.astype(float))  # (B, rows)
    ok = present.any(axis=1) & ~np.isinf(values).any(axis=1)
    if ok.any():
        lo[ok], hi[ok] = _percentiles(means[:, ok].T, [2.5, 97.5], method="linear")
    return lo, hi


def _percentiles(values: np.ndarray, qs: list[float], method: str = "nearest") -> np.ndarray:
    """Row percentiles ignoring NaN; numpy's NaN-aware version loops over rows in Python, so it is kept
    for matrices that hold a NaN (``nearest``: an infinite value is not interpolated into NaN)."""
    if np.isnan(values).any():
        return np.nanpercentile(values, qs, axis=-1, method=method)
    return np.percentile(values, qs, axis=-1, method=method)


def aggregate(table: Any, index: dict, resamples: int = BOOTSTRAP) -> Any:
    """Per (setting, generation, scalar metric): n, mean, median, q05, q95, ci_low, ci_high (a DataFrame)."""
    import pandas as pd

    frames = []
    metrics = scalar_metrics(table, {k for e in index["cells"] for k in e["values"]})
    if not table.num_rows or not metrics:
        return pd.DataFrame(columns=["setting", "generation", "metric", "n", "mean", "median", "q05", "q95",
                                     "ci_low", "ci_high"])
    df = table.select(["setting", "generation", *metrics]).to_pandas()
    for setting, part in df.groupby("setting", sort=False):
        gens = np.sort(part["generation"].unique())
        # A (generations, values) matrix per metric: rows grouped by generation, padded with NaN.
        order = np.argsort(part["generation"].to_numpy(), kind="stable")
        g_sorted = part["generation"].to_numpy()[order]
        starts = np.searchsorted(g_sorted, gens)
        counts = np.diff(np.append(starts, len(g_sorted)))
        width = int(counts.max())
        # Seeded by the setting's name: its interval does not change when other cells are added or fail.
        rng = np.random.default_rng(int(hashlib.sha256(setting.encode()).hexdigest()[:16], 16))
        for metric in metrics:
            flat = part[metric].to_numpy(dtype=float)[order]
            mat = np.full((len(gens), width), np.nan)
            for i, (a, c) in enumerate(zip(starts, counts)):
                mat[i, :c] = flat[a:a + c]
            if np.isnan(mat).all():
                continue
            lo, hi = bootstrap_mean(mat, rng, resamples)
            with warnings.catch_warnings():  # a generation where every replicate stopped: NaN, quietly
                warnings.simplefilter("ignore", RuntimeWarning)
                q05, q95 = _percentiles(mat, [5, 95])
                median = _percentiles(mat, [50], method="linear")[0]
                frames.append(pd.DataFrame({
                    "setting": setting, "generation": gens.astype(int), "metric": metric,
                    "n": (~np.isnan(mat)).sum(axis=1), "mean": np.nanmean(mat, axis=1),
                    "median": median, "q05": q05, "q95": q95, "ci_low": lo, "ci_high": hi}))
    if not frames:  # no metric has a value anywhere (every replicate stopped at once)
        return aggregate(table.slice(0, 0), index, resamples)
    out = pd.concat(frames, ignore_index=True)
    # The setting's variant and grid values, typed as in results.parquet (numbers as floats, else text).
    types = _axis_types(index)
    first = {e["setting"]: e for e in reversed(index["cells"])}
    columns = {"variant": out["setting"].map(lambda s: first[s].get("variant") if s in first else None)}
    for key, kind in types.items():
        columns[key] = out["setting"].map(
            lambda s, k=key, t=kind: None if s not in first or first[s]["values"].get(k) is None
            else _axis_value(first[s]["values"][k], t))
    return pd.concat([out[["setting"]], pd.DataFrame(columns), out.drop(columns="setting")], axis=1)


# -- reading ----------------------------------------------------------------------------------------
def load_results(path: str | Path, metrics: Iterable[str] | None = None, generations: Iterable[int] | None = None,
                 cells: Iterable[str] | None = None) -> Any:
    """A study's or a run's metric rows as a pandas DataFrame, one row per (cell, replicate, generation).

    ``metrics``: only these metric columns; ``generations``: only these generations; ``cells``
    (a study): only these cells or settings. Nothing else is read: a study's ``results.parquet`` is
    read with a column projection and a row filter, a run's Parquet parts outside the generations are
    not opened. A study whose ``results.parquet`` is missing or older than a cell is read from its cells.
    """
    path = Path(path)
    columns = None if metrics is None else list(metrics)
    if is_study_dir(path):
        results = path / RESULTS
        if results.is_file() and _fresh(path, results):
            return _read_results(results, columns, generations, cells)
        return study_table(path, columns, generations, cells).to_pandas()
    from ..store import RunStore

    RunStore.open(path, writable=False)  # a clear error for a directory that is neither
    return run_table(path, columns, generations).to_pandas()


def _fresh(path: Path, results: Path) -> bool:
    """results.parquet was written after the study index last changed."""
    return results.stat().st_mtime >= (path / "study.json").stat().st_mtime - 1e-3


def _read_results(results: Path, columns: list[str] | None, generations: Iterable[int] | None,
                  cells: Iterable[str] | None) -> Any:
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    schema = pq.read_schema(results)
    names = None
    if columns is not None:
        keep = {"stopped", "replicate", "generation", *columns}
        names = [n for n in schema.names if n in keep or n not in _metric_names(schema)]
    filters = []
    if generations is not None:
        filters.append(("generation", "in", sorted({int(g) for g in generations})))
    table = pq.read_table(results, columns=names, filters=filters or None, partitioning=None)
    if cells is not None:
        wanted = pa.array(list(cells), pa.string())
        table = table.filter(pc.or_(pc.is_in(table["cell"], value_set=wanted), pc.is_in(table["setting"], value_set=wanted)))
    return table.to_pandas()


def _metric_names(schema: Any) -> set[str]:
    """Columns after the cell keys, grid values, replicate and generation: the metrics."""
    names = list(schema.names)
    start = names.index("generation") + 1 if "generation" in names else 0
    return {n for n in names[start:] if n != "stopped"}


def read_index(path: Path | str) -> dict:
    return StudyDir.open(path).read()
