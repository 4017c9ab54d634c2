"""Run a study: every cell not yet completed, on a backend, with one progress display and one index.

A relaunch (``--resume``, or the same study into the same ``--out``) skips completed cells and
resumes the others from their own checkpoints; a failing cell is recorded with its error and
the others go on. At the end the study's tables (:mod:`.results`) and report are written.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import SpecError
from ..store import RunDirError, now
from .index import StudyDir
from .results import TABLES
from .spec import Study

#: How often the display is refreshed while cells run (seconds).
POLL_SECONDS = 0.2


@dataclass
class SweepOutcome:
    path: Path
    completed: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)  # cell -> error
    interrupted: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # completed by an earlier launch
    tracker_errors: dict[str, dict[str, str]] = field(default_factory=dict)  # cell -> {tracker: error}
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.failed and not self.interrupted


def default_workers() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def sweep(study: Study | None, out: Path | str, *, resume: bool = False, backend: str = "local",
          workers: int | None = None, address: str | None = None, gpus_per_cell: float = 0.0,
          threads_per_cell: int = 1, progress: bool = True, cell_reports: bool = True, report: bool = True,
          force: bool = False, log: Any = None, trackers: list[str] | None = None) -> SweepOutcome:
    """Run ``study`` into ``out`` (``study=None`` with ``resume=True``: the study stored there).

    ``workers``: cores the local backend may use (default: this machine's); a cell claims
    ``spec.workers x threads_per_cell`` of them. ``log(text)`` receives one-line messages.
    ``trackers``: experiment trackers every cell logs to (besides its spec's ``logging.trackers``), one
    tracker run per cell grouped by the study's name, files in ``out/trackers``."""
    say = log or (lambda text: None)
    if trackers:  # refused before anything is written: an unknown tracker, or one not installed
        from ..trackers import check_installed, tracker_names

        trackers = tracker_names(trackers, "--log")
        check_installed(trackers)
    workers = workers or default_workers()
    if workers < 1 or threads_per_cell < 1:
        raise SpecError([f"--workers and --threads-per-cell must be at least 1 (got {workers}, {threads_per_cell})"])
    if backend not in ("local", "ray"):
        raise SpecError([f"--backend: unknown value {backend!r} (local or ray)"])
    if backend != "ray" and (address or gpus_per_cell):
        raise SpecError(["--address and --gpus-per-cell go with --backend ray"])
    out = Path(out)
    if study is not None:  # trackers the cells' own specs name: refused now too, not in every cell
        from ..trackers import check_installed

        check_installed(sorted({t for cell in study.cells for t in cell.spec.logging.trackers}))
    if resume:
        folder = StudyDir.open(out)
    elif study is None:
        raise SpecError(["sweep needs a study (or --resume with --out DIR)"])
    else:
        _check_resources(study, out, force, workers if backend == "local" else 1, say)
    # Ray starts (or refuses: not installed, an unreachable --address, too few GPUs) before anything is written
    runner = None
    if backend == "ray":
        import importlib.util

        if importlib.util.find_spec("ray") is not None:  # else the backend says how to install it, and only that
            say(f"ray: connecting to {address}" if address else f"ray: starting a local instance ({workers} CPUs)")
        runner = _backend(backend, workers, address, gpus_per_cell)
    try:
        if resume:
            folder.lock()
        else:
            folder = StudyDir.create(out, study)
        try:
            return _sweep(folder, runner, backend=backend, workers=workers, address=address, gpus=gpus_per_cell,
                          threads=threads_per_cell, progress=progress, cell_reports=cell_reports, report=report,
                          say=say, trackers=trackers or [])
        finally:
            folder.unlock()
    finally:
        if runner is not None:
            runner.close()


def _check_resources(study: Study, out: Path, force: bool, concurrent: int, say: Any) -> None:
    """Each cell alone must fit this machine, and all of them the free disk (``force`` skips both); say so
    when the largest cells running at once could together exceed the memory."""
    from ..resources import check, estimate, free_disk, human, total_memory

    if force:
        return
    largest = sorted((estimate(c.spec).memory for c in study.cells), reverse=True)[:concurrent]
    if sum(largest) > total_memory():
        say(f"note: {concurrent} of the largest cells at once could need {human(sum(largest))} of memory, more than "
            f"this machine's {human(total_memory())}; lower --workers if the study runs out of memory")
    for cell in study.cells:
        try:
            check(cell.spec, out, force=False)
        except RunDirError as exc:
            raise SpecError([f"cell {cell.name}: {exc}"]) from None
        except SpecError as exc:
            raise SpecError([f"cell {cell.name}: {p}" for p in exc.problems]) from None
    disk = sum(estimate(c.spec).disk for c in study.cells)
    room = free_disk(out)
    if disk > room:
        raise SpecError([f"the study would write {human(disk)} over {len(study.cells)} cells and {human(room)} of disk "
                         "is free; fewer cells or smaller ones, or --force"])


def _sweep(folder: StudyDir, runner: Any, *, backend: str, workers: int, address: str | None, gpus: float,
           threads: int, progress: bool, cell_reports: bool, report: bool, say: Any,
           trackers: list[str] | None = None) -> SweepOutcome:
    index = folder.read()
    # Cells whose spec names trackers log too (a base spec's logging section): all of them into the study's folder.
    log = {"names": list(trackers or []), "dir": str((folder.path / "trackers").resolve()), "group": index["name"]}
    t0 = time.perf_counter()
    outcome = SweepOutcome(folder.path)
    todo = []
    for entry in index["cells"]:
        done = entry["status"] == "completed" and (folder.path / entry["path"] / "manifest.json").is_file()
        if done:
            outcome.skipped.append(entry["name"])
        else:
            todo.append(entry)
    if outcome.skipped:
        say(f"{len(outcome.skipped)} of {len(index['cells'])} cells already completed; running the other {len(todo)}")
    index["status"], index["started"] = "running", index.get("started") or now()
    index["backend"] = backend
    folder.write(index)
    by_name = {e["name"]: e for e in index["cells"]}
    if todo:
        runner = runner or _backend(backend, workers, address, gpus)
        try:
            _schedule(runner, folder, index, by_name, todo, threads, cell_reports, progress, outcome, say, log)
        except KeyboardInterrupt:
            index["status"] = "interrupted"
            folder.write(index)
            raise
        finally:
            runner.close()
    outcome.seconds = time.perf_counter() - t0
    index["status"] = "completed" if all(e["status"] == "completed" for e in index["cells"]) else "failed"
    index["finished"] = now()
    folder.write(index)
    from .results import write_results

    write_results(folder.path)  # also when every cell failed: the tables then say so, and none is stale
    if report:
        from ..report.study import write_study_report

        say(f"report: {write_study_report(folder.path)}")
    return outcome


def _backend(kind: str, workers: int, address: str | None, gpus: float) -> Any:
    from .backends import LocalBackend, RayBackend

    if kind == "ray":
        return RayBackend(workers, address, gpus)
    return LocalBackend(workers)


def _cores(entry: dict, threads: int, slots: int) -> int:
    return min(slots, max(1, int(entry["spec"].get("workers", 1))) * threads)


def _schedule(runner: Any, folder: StudyDir, index: dict, by_name: dict, todo: list[dict], threads: int,
              cell_reports: bool, progress: bool, outcome: SweepOutcome, say: Any, log: dict | None = None) -> None:
    pending = list(todo)
    running: dict[Any, tuple[dict, int]] = {}  # handle -> (entry, cores)
    used = 0
    with _display(progress, len(by_name), len(outcome.skipped)) as display:
        try:
            while pending or running:
                # Start cells while their cores fit (a cell claiming more than all of them runs alone); on
                # Ray the slots are the cluster's CPUs, so a cell marked running is running, not queued.
                started = False
                while pending:
                    entry = pending[0]
                    cores = _cores(entry, threads, runner.slots)
                    if running and used + cores > runner.slots:
                        break
                    started = True
                    pending.pop(0)
                    kwargs = {"name": entry["name"], "path": str((folder.path / entry["path"]).resolve()),
                              "spec": entry["spec"], "threads": threads, "report": cell_reports,
                              "table": str((folder.path / TABLES / f"{entry['name']}.parquet").resolve()),
                              "trackers": log}
                    running[runner.submit(kwargs, cores)] = (entry, cores)
                    used += cores
                    entry.update(status="running", started=now(), error=None)
                    display.start(entry)
                if started:
                    folder.write(index)
                done = runner.wait(list(running), POLL_SECONDS)
                for name, g in runner.progress():
                    display.generation(name, g)
                for handle in done:
                    entry, cores = running.pop(handle)
                    used -= cores
                    result = runner.result(handle)
                    _record(entry, result, outcome)
                    display.finish(entry)
                    if entry["status"] == "failed":
                        say(f"cell {entry['name']} failed: {entry['error']}")
                if done:
                    folder.write(index)
                display.refresh(running_count=len(running))
        except KeyboardInterrupt:
            for handle, (entry, _) in running.items():  # recorded first: a second Ctrl-C may cut the stop short
                entry.update(status="interrupted", error="interrupted")
                outcome.interrupted.append(entry["name"])
            folder.write(index)
            if runner.name == "ray":
                runner.stop(list(running))
            else:
                runner.stop()
            raise


def _record(entry: dict, result: dict, outcome: SweepOutcome) -> None:
    status = result.get("status", "failed")
    entry.update(status=status, error=result.get("error"), finished=now(), seconds=result.get("seconds"),
                 generations_completed=result.get("generations_completed"))
    if result.get("traceback"):
        entry["traceback"] = result["traceback"]
    else:
        entry.pop("traceback", None)
    if result.get("tracker_errors"):  # the cell completed; a tracker failed in it (recorded, said at the end)
        entry["tracker_errors"] = outcome.tracker_errors[entry["name"]] = result["tracker_errors"]
    if status == "completed":
        outcome.completed.append(entry["name"])
    elif status == "interrupted":
        outcome.interrupted.append(entry["name"])
    else:
        outcome.failed[entry["name"]] = str(result.get("error"))


class _Display:
    """One bar for the study (done, running, failed, time left) and one per running cell."""

    def __init__(self, total: int, done: int) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        from ..progress import progress_bar  # rich's Progress; in Jupyter drawn as HTML updated in place

        self.bar = progress_bar(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                TimeElapsedColumn(), TimeRemainingColumn(), transient=False)
        self.study = self.bar.add_task("study", total=total, completed=done)
        self.cells: dict[str, Any] = {}
        self.failed = 0

    def __enter__(self) -> "_Display":
        self.bar.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.bar.__exit__(*exc)

    def start(self, entry: dict) -> None:
        total = int(entry["spec"].get("generations", 0)) + 1
        self.cells[entry["name"]] = self.bar.add_task(f"  {entry['name'][:48]}", total=total)

    def generation(self, name: str, g: int) -> None:
        if name in self.cells:
            self.bar.update(self.cells[name], completed=g + 1)

    def finish(self, entry: dict) -> None:
        task = self.cells.pop(entry["name"], None)
        if task is not None:
            self.bar.remove_task(task)
        self.failed += entry["status"] != "completed"
        self.bar.advance(self.study)

    def refresh(self, running_count: int) -> None:
        failed = f", [red]{self.failed} failed[/]" if self.failed else ""
        self.bar.update(self.study, description=f"[bold]study[/] cells ({running_count} running{failed})")


class _Quiet:
    def __enter__(self) -> "_Quiet":
        return self

    def __exit__(self, *exc: Any) -> None:
        pass

    def start(self, entry: dict) -> None:
        pass

    def generation(self, name: str, g: int) -> None:
        pass

    def finish(self, entry: dict) -> None:
        pass

    def refresh(self, running_count: int) -> None:
        pass


def _display(enabled: bool, total: int, done: int) -> Any:
    return _Display(total, done) if enabled else _Quiet()


__all__ = ["SweepOutcome", "default_workers", "sweep"]
