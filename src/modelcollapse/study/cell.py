"""One cell of a study, run in a worker process (a local pool's or a Ray task's).

A cell is an ordinary run: :func:`modelcollapse.loop.run` into its directory, resumed when the
directory already holds a run. Its randomness comes from its spec alone, and its thread count
is fixed by the study (``threads_per_cell``, not by how many cells run at once), so a cell gives
the same numbers on any backend and with any number of workers.
"""

from __future__ import annotations

import shutil
import signal
import time
import traceback
from pathlib import Path
from typing import Any

#: Seconds between two progress messages of one cell (a fast chain makes thousands of generations).
PROGRESS_SECONDS = 0.25


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def run_cell(name: str, path: str, spec: dict, *, threads: int = 1, report: bool = True, table: str | None = None,
             progress: Any = None, trackers: dict | None = None) -> dict[str, Any]:
    """Run (or continue) one cell; return its outcome as plain data: status, seconds, error.

    ``trackers``: ``{"names", "dir", "group"}``, the study's experiment trackers (added to the cell
    spec's own ``logging.trackers``): one tracker run named after the cell, in the study's group."""
    from ..config import validate
    from ..loop import run
    from ..pool import limit_threads
    from ..store import RunStore

    limit_threads(threads)
    try:  # SIGTERM (the study being stopped) ends the cell as Ctrl-C does: its manifest says "interrupted"
        signal.signal(signal.SIGTERM, _interrupt)
    except ValueError:  # not the main thread (some Ray set-ups): the default action stands
        pass
    t0 = time.perf_counter()
    out = Path(path)
    last = [0.0]

    def tell(g: int) -> None:
        now = time.perf_counter()
        if progress is not None and (now - last[0] >= PROGRESS_SECONDS or g == resolved.generations):
            last[0] = now
            try:
                progress.put_nowait((name, g))
            except Exception:  # noqa: BLE001 - a full or closed queue never stops a cell
                pass

    try:
        resolved = validate(spec)
        if out.is_dir() and not (out / "manifest.json").is_file():
            # Stopped while its directory was being created: nothing was recorded, start it afresh.
            shutil.rmtree(out)
        resume = (out / "config.yaml").is_file()
        if resume:
            manifest = RunStore.open(out, writable=False).manifest()
            if manifest.get("status") == "completed" and manifest.get("generations_completed") == resolved.generations:
                return _outcome("completed", t0, manifest, report_path=_report(out, report))
        session = _session(name, resolved, trackers)
        store = run(resolved, out, resume=resume, progress=False, on_generation=tell, trackers=session)
        manifest = store.manifest()
        try:
            if table:  # the cell's rows for the study's tables, read here in parallel rather than by the study
                from .results import save_cell_table

                save_cell_table(out, Path(table))
            outcome = _outcome("completed", t0, manifest, report_path=_report(out, report))
        finally:  # the tracker runs end whatever the tables or the report did
            if session is not None:
                session.finish(out, "completed")
        if session is not None and session.failed:  # said once in the study's index; the cell itself is fine
            outcome["tracker_errors"] = dict(session.failed)
        return outcome
    except KeyboardInterrupt:
        return {"status": "interrupted", "seconds": time.perf_counter() - t0, "error": "interrupted"}
    except Exception as exc:  # noqa: BLE001 - recorded in study.json; the other cells go on
        return {"status": "failed", "seconds": time.perf_counter() - t0, "error": f"{type(exc).__name__}: {exc}",
                "traceback": traceback.format_exc(limit=8)}


def _session(name: str, spec: Any, trackers: dict | None) -> Any:
    names = list(dict.fromkeys([*spec.logging.trackers, *((trackers or {}).get("names") or [])]))
    if not names:
        return None
    from ..trackers import Session

    folder = spec.logging.dir or (trackers or {}).get("dir")
    # A failing tracker is recorded in the outcome (the cell's process has no console to warn on).
    return Session(names, spec.logging, folder=folder, group=(trackers or {}).get("group"), name=name,
                   warn=lambda text: None)


def _report(out: Path, wanted: bool) -> str | None:
    if not wanted:
        return None
    from ..report import write_report

    if (out / "report.html").is_file() and (out / "report.html").stat().st_mtime >= (out / "manifest.json").stat().st_mtime:
        return str(out / "report.html")
    return str(write_report(out))


def _outcome(status: str, t0: float, manifest: dict, report_path: str | None) -> dict[str, Any]:
    return {"status": status, "seconds": time.perf_counter() - t0, "error": None,
            "elapsed": manifest.get("elapsed_seconds"), "generations_completed": manifest.get("generations_completed"),
            "report": report_path}
