"""Command line: ``modelcollapse run | sweep | report | export | lineage | repair | presets | plugins | theory |
show``."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from datetime import datetime
from pathlib import Path

from rich.console import Console
from rich.markup import escape

from . import distributed
from .config import SpecError, load_spec, presets, read_source, study_presets
from .store import RunDirError

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="modelcollapse",
        description="Simulate and measure model collapse: models trained, generation after generation, on their own samples.",
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    r = sub.add_parser("run", help="run an experiment (a preset name or a YAML spec) and write its report")
    r.add_argument("spec", nargs="?", help="preset name or spec file (optional with --resume)")
    r.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a spec key, e.g. --set policy.kind=accumulate (value parsed as YAML); repeatable")
    r.add_argument("--out", type=Path, help="run directory (default: runs/NAME-TIMESTAMP)")
    r.add_argument("--resume", action="store_true", help="continue the interrupted run in --out")
    r.add_argument("--repair", action="store_true", help="with --resume: repair the run directory first "
                                                         "(as `modelcollapse repair` does)")
    r.add_argument("--force", action="store_true", help="run even when the estimated memory or disk exceeds "
                                                        "what this machine has")
    r.add_argument("--workers", type=int, help="processes for families fitted per replicate (gmm, vae); "
                                                    "for a study, the cores it may use")
    r.add_argument("--no-report", action="store_true", help="skip the HTML report at the end (a study: its own "
                                                            "and every cell's)")
    r.add_argument("--log", metavar="TRACKERS", help="also log to experiment trackers: tensorboard, mlflow, wandb "
                                                      "(comma-separated; as logging.trackers in the spec)")
    r.add_argument("-q", "--quiet", action="store_true", help="no progress bar")

    w = sub.add_parser("sweep", help="run a study: a spec or preset over a grid of settings and seeds, one run "
                                     "directory per cell, one results table and one report")
    w.add_argument("spec", nargs="?", help="a study file or preset, or a plain spec/preset to vary with --grid/--seeds")
    w.add_argument("--grid", action="append", default=[], metavar="KEY=a,b,c",
                   help="vary a spec key over values (each read as YAML); repeatable: every combination runs")
    w.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a key in every cell; repeatable")
    w.add_argument("--seeds", metavar="SEEDS", help="run every setting once per seed: 0,1,2 or a range 0-9")
    w.add_argument("--out", type=Path, help="study directory (default: runs/NAME-TIMESTAMP)")
    w.add_argument("--resume", action="store_true", help="finish the study in --out: skip completed cells, "
                                                         "resume interrupted ones, retry failed ones")
    w.add_argument("--backend", choices=("local", "ray"), default="local",
                   help="local: a process pool (default); ray: Ray tasks (pip install -e \".[ray]\")")
    w.add_argument("--workers", type=int, help="cores the study may use at once (default: all of this machine's); "
                                               "a cell claims its spec's workers x --threads-per-cell")
    w.add_argument("--threads-per-cell", type=int, default=1, metavar="N",
                   help="BLAS/PyTorch threads of each cell's processes (default 1; fixed, so that results do not "
                        "depend on --workers)")
    w.add_argument("--address", help="with --backend ray: an existing cluster's HOST:PORT (default: start Ray here)")
    w.add_argument("--gpus-per-cell", type=float, default=0.0, metavar="G", help="with --backend ray: GPUs each cell "
                                                                                  "needs (e.g. 1 for language models)")
    w.add_argument("--name", help="the study's name (default: the study file's, or the base spec's)")
    w.add_argument("--force", action="store_true", help="run even when the estimates exceed this machine")
    w.add_argument("--no-report", action="store_true", help="skip the study report")
    w.add_argument("--no-cell-reports", action="store_true", help="skip each cell's own report")
    w.add_argument("--log", metavar="TRACKERS", help="log every cell to experiment trackers (tensorboard, mlflow, "
                                                     "wandb; comma-separated), one tracker run per cell, grouped by "
                                                     "the study's name")
    w.add_argument("-q", "--quiet", action="store_true", help="no progress display")

    rep = sub.add_parser("report", help="(re)write DIR/report.html and figures from a run or study directory")
    rep.add_argument("run_dir", type=Path)

    lin = sub.add_parser("lineage", help="where a generation's training data came from: its sources, how many "
                                         "models stand between it and real data, one example's origin (reads only)")
    lin.add_argument("run_dir", type=Path)
    lin.add_argument("--generation", "-g", type=int, required=True, metavar="G",
                     help="the generation whose training set to trace")
    lin.add_argument("--replicate", "-r", type=int, metavar="R", help="one replicate's counts (default: the mean "
                                                                      "over replicates; with --index: 0)")
    lin.add_argument("--index", "-i", type=int, metavar="I", help="one example of the training set: its source, "
                                                                  "weight and the ancestry of its source")
    lin.add_argument("--json", action="store_true", help="print one JSON object (for scripts)")

    exp = sub.add_parser("export", help="send a finished run (or every cell of a study) to experiment trackers, "
                                        "as --log would have during the run")
    exp.add_argument("run_dir", type=Path)
    exp.add_argument("--to", required=True, metavar="TRACKERS", help="tensorboard, mlflow, wandb (comma-separated)")
    exp.add_argument("--dir", type=Path, help="where the tracker files go (default: DIR/trackers; MLflow: "
                                              "MLFLOW_TRACKING_URI when set)")
    exp.add_argument("--project", help="the W&B project / MLflow experiment (default: the spec's logging.project)")
    exp.add_argument("--wandb-mode", choices=("offline", "online"), help="default: the spec's logging.wandb_mode")

    fix = sub.add_parser("repair", help="check a run directory and rebuild what can be rebuilt (metric rows, "
                                        "provenance, the manifest, real data); say what cannot")
    fix.add_argument("run_dir", type=Path)

    sub.add_parser("presets", help="list the built-in presets (and the installed plug-ins)")
    sub.add_parser("plugins", help="list every model family, data kind, policy, metric and estimator, and where "
                                   "each came from (built-in, a plug-in package, ...)")

    t = sub.add_parser("theory", help="print the closed forms that apply to a spec (runs nothing): what each is, "
                                      "and its values at a few generations")
    t.add_argument("spec")
    t.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    t.add_argument("--at", type=int, action="append", metavar="G", help="a generation to print (repeatable; "
                                                                           "default: five spread over the run)")

    s = sub.add_parser("show", help="print the fully resolved spec (validates it; runs nothing)")
    s.add_argument("spec")
    s.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    err = Console(stderr=True, highlight=False, soft_wrap=True)
    try:
        commands = {"run": _run, "report": _report, "presets": _presets, "show": _show, "plugins": _plugins,
                    "repair": _repair, "theory": _theory, "sweep": _sweep, "lineage": _lineage, "export": _export}
        _report_broken_plugins(err)
        return commands[args.command](args, err)
    except (SpecError, RunDirError) as exc:
        err.print(f"[red]error:[/] {escape(str(exc))}")
        return EXIT_USAGE
    except KeyboardInterrupt:
        err.print("\ninterrupted; continue with: modelcollapse run --resume --out DIR")
        return EXIT_INTERRUPTED


def _terminate(signum: int, frame: object) -> None:
    """SIGTERM ends a run as Ctrl-C does: the manifest says "interrupted", workers end, the lock is freed."""
    raise KeyboardInterrupt


def _run(args: argparse.Namespace, err: Console) -> int:
    from .loop import run  # deferred: keeps `presets` and `show` instant

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _terminate)
    if args.workers is not None and not _is_study_source(args.spec):
        args.overrides.append(f"workers={args.workers}")
    if args.log:
        args.overrides.append(f"logging.trackers={args.log}")
    if args.repair and not args.resume:
        raise RunDirError("--repair goes with --resume (or use `modelcollapse repair DIR`)")
    if _is_study_source(args.spec) or (args.resume and args.out and _is_study_dir(args.out)):
        return _sweep(argparse.Namespace(spec=args.spec, grid=[], overrides=args.overrides, seeds=None, out=args.out,
                                         resume=args.resume, backend="local", workers=args.workers,
                                         threads_per_cell=1, address=None, gpus_per_cell=0.0, name=None,
                                         force=args.force, no_report=args.no_report, no_cell_reports=args.no_report,
                                         quiet=args.quiet, log=args.log, from_run=True), err)
    if args.resume:
        if args.out is None:
            raise RunDirError("--resume needs --out DIR, the run directory to continue")
        if args.repair and _repair_dir(args.out, err) == "damaged":
            return EXIT_FAILED
        spec = load_spec(args.spec, args.overrides) if args.spec else _stored_spec(args.out, args.overrides)
    else:
        if not args.spec:
            raise SpecError(["run needs a SPEC (a preset name or a YAML file); see `modelcollapse presets`"])
        spec = load_spec(args.spec, args.overrides)
    # Under `accelerate launch` every process runs this; one names the directory, one talks.
    out = args.out or distributed.broadcast(Path("runs") / f"{spec.name}-{datetime.now():%Y%m%d-%H%M%S}")
    if not distributed.is_main():
        err = Console(stderr=True, quiet=True)
    if not args.resume and distributed.is_main():
        from .store import RunStore

        RunStore.check_new(Path(out))
    _say_estimate(spec, out, err, force=args.force, existing=args.resume)
    trackers = None
    if spec.logging.trackers and distributed.is_main():  # refused here when one is not installed
        from .trackers import Session

        trackers = Session(spec.logging.trackers, spec.logging,
                           warn=lambda text: err.print(f"[yellow]warning:[/] {escape(text)}"))
    err.print(f"running [bold]{spec.name}[/]: {spec.replicates} replicates × {spec.generations} generations → {out}")
    try:
        store = run(spec, out, resume=args.resume, progress=not args.quiet and distributed.is_main(), force=args.force,
                    trackers=trackers)
    except KeyboardInterrupt:
        err.print(f"\ninterrupted; continue with: modelcollapse run --resume --out {out}")
        return EXIT_INTERRUPTED
    except (SpecError, RunDirError):
        raise  # refused before any work: main() reports it
    except Exception as exc:  # the manifest already says "failed"; tell the user where
        err.print(f"[red]run failed:[/] {type(exc).__name__}: {exc}\n(details in {out / 'manifest.json'})")
        return EXIT_FAILED
    late = store.manifest().get("not_converged", {}) if distributed.is_main() else {}
    if late:
        err.print(f"[yellow]note:[/] {sum(late.values())} fits in {len(late)} generations reached model.max_iter "
                  "before converging (counts per generation: manifest.json, not_converged)")
    try:
        if not args.no_report and distributed.is_main():
            from .report import write_report

            html = write_report(store.path)
            err.print(f"report: {html}")
    finally:  # the tracker runs end (with the report, when it was written) whatever the report did
        if trackers is not None:
            trackers.finish(store.path, "completed")
            sent = [n for n in trackers.names if n not in trackers.failed]
            if sent:
                err.print(f"logged to {', '.join(sent)}: {escape(str(trackers.folder or store.path / 'trackers'))}")
    err.print(f"done: {store.path}")
    return EXIT_OK


def _is_study_source(spec: str | None) -> bool:
    if not spec:
        return False
    from .config import read_source
    from .study import is_study

    try:
        return is_study(read_source(spec))
    except SpecError:
        return False


def _is_study_dir(path: Path) -> bool:
    from .study.index import is_study_dir

    return is_study_dir(path)


def _sweep(args: argparse.Namespace, err: Console) -> int:
    from .study import build
    from .study.runner import sweep

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _terminate)
    if args.resume:
        if args.out is None:
            raise RunDirError("--resume needs --out DIR, the study directory to finish")
        extra = [flag for flag, given in (("SPEC", args.spec and not getattr(args, "from_run", False)),
                                          ("--grid", args.grid), ("--set", args.overrides), ("--seeds", args.seeds))
                 if given]
        if extra:
            raise SpecError([f"--resume finishes the study stored in --out as it was defined; drop {', '.join(extra)}"])
        study = None
    else:
        if not args.spec:
            raise SpecError(["sweep needs a SPEC (a study file or preset, or a spec/preset with --grid or --seeds)"])
        study = build(args.spec, grid=args.grid, sets=args.overrides, seeds=args.seeds, name=args.name)
    out = args.out or Path("runs") / f"{study.name}-{datetime.now():%Y%m%d-%H%M%S}"
    if study is not None:
        n_settings = len(study.settings)
        err.print(f"study [bold]{study.name}[/]: {len(study.cells)} cells ({n_settings} setting{'s' * (n_settings != 1)}"
                  f"{f' x {len(set(c.seed for c in study.cells))} seeds' if len(study.settings) < len(study.cells) else ''})"
                  f" → {out}")
    try:
        outcome = sweep(study, out, resume=args.resume, backend=args.backend, workers=args.workers,
                        address=args.address, gpus_per_cell=args.gpus_per_cell, threads_per_cell=args.threads_per_cell,
                        progress=not args.quiet, cell_reports=not args.no_cell_reports, report=not args.no_report,
                        force=args.force, log=lambda text: err.print(escape(text)),
                        trackers=[t.strip() for t in args.log.split(",") if t.strip()] if args.log else None)
    except KeyboardInterrupt:
        err.print(f"\ninterrupted; continue with: modelcollapse sweep --resume --out {out}")
        return EXIT_INTERRUPTED
    n_done = len(outcome.completed) + len(outcome.skipped)
    for name, errors in outcome.tracker_errors.items():
        for tracker, error in errors.items():
            err.print(f"[yellow]warning:[/] cell {escape(name)}: tracker {tracker} failed ({escape(error)}); the cell "
                      f"completed (modelcollapse export {escape(str(out))} --to {tracker} sends the study later)")
    err.print(f"{n_done} cells completed ({len(outcome.skipped)} earlier), {len(outcome.failed)} failed, "
              f"in {outcome.seconds:.1f} s: {out}")
    if outcome.failed:
        for name, error in outcome.failed.items():
            err.print(f"[red]failed:[/] {escape(name)}: {escape(error)}")
        err.print(f"(details in {out / 'study.json'}; retry them with: modelcollapse sweep --resume --out {out})")
        return EXIT_FAILED
    return EXIT_OK


def _export(args: argparse.Namespace, err: Console) -> int:
    from .trackers.export import export

    done = export(args.run_dir, [t.strip() for t in args.to.split(",") if t.strip()], folder=args.dir,
                  project=args.project, wandb_mode=args.wandb_mode,
                  warn=lambda text: err.print(f"[yellow]warning:[/] {escape(text)}"),
                  on_run=lambda name, n: err.print(f"sent {escape(name)}: {n} generations"))
    if done["failed"]:
        for name, error in done["failed"].items():
            err.print(f"[red]export to {name} failed:[/] {escape(error)}")
        return EXIT_FAILED
    err.print(f"exported {len(done['runs'])} run{'s' * (len(done['runs']) != 1)} to {args.to}: "
              f"{escape(str(args.dir or args.run_dir / 'trackers'))}")
    return EXIT_OK


def _theory(args: argparse.Namespace, err: Console) -> int:
    from . import theory
    from .report.theory import table_generations

    spec = load_spec(args.spec, args.overrides)
    found, notes = theory.collect(spec)
    out = Console(highlight=False, soft_wrap=True)
    if not found:
        out.print(notes[0] if notes else "No closed form applies.")
        return EXIT_OK
    gens = sorted(set(args.at)) if args.at else table_generations(spec.generations)
    bad = [g for g in gens if not 0 <= g <= spec.generations]
    if bad:
        raise SpecError([f"--at: generation {bad[0]} is outside the run's 0-{spec.generations}"])
    from rich.table import Table

    table = Table(box=None, pad_edge=False)
    for column in ("result", "statistic", *[f"g={g}" for g in gens], "kind"):
        table.add_column(column, no_wrap=True)
    for name, curve in found.items():
        for key in ("mean", "rms", "median", "q05", "q95"):
            if key in curve:
                table.add_row(name, key, *[f"{curve[key][g]:.4g}" for g in gens], curve["label"])
    out.print(table)
    for name, curve in found.items():
        out.print(f"[bold]{name}[/] ({curve['label']}): {escape(curve['about'])}")
    for note in notes:
        out.print(f"not provided: {escape(note)}")
    return EXIT_OK


def _stored_spec(out: Path, overrides: list[str]):
    from .store import RunStore

    RunStore.open(out)  # a clear error for a directory that is not a run
    return load_spec(str(out / "config.yaml"), overrides, stored=True)


def _say_estimate(spec, out: Path, err: Console, *, force: bool, existing: bool) -> None:
    """Refuse a run too large for this machine, before anything is written; print the estimate when large."""
    from .resources import LARGE, check

    est = check(spec, out, force=force, existing=existing)
    if est.memory > LARGE or est.disk > LARGE:
        err.print(f"estimated: {escape(est.describe())}")


def _report(args: argparse.Namespace, err: Console) -> int:
    from .report import write_report

    if _is_study_dir(args.run_dir):
        from .report.study import write_study_report
        from .study.results import write_results

        write_results(args.run_dir)
        err.print(f"report: {write_study_report(args.run_dir)}")
        return EXIT_OK
    err.print(f"report: {write_report(args.run_dir)}")
    return EXIT_OK


def _lineage(args: argparse.Namespace, err: Console) -> int:
    from .lineage import describe, lineage

    result = lineage(args.run_dir, args.generation, args.replicate, args.index)
    if args.json:
        from .store import dumps, jsonable

        sys.stdout.write(dumps(jsonable(result)) + "\n")
    else:
        sys.stdout.write(describe(result) + "\n")
    return EXIT_OK


def _repair(args: argparse.Namespace, err: Console) -> int:
    return EXIT_FAILED if _repair_dir(args.run_dir, err) == "damaged" else EXIT_OK


def _repair_dir(path: Path, err: Console) -> str:
    """Repair a run directory, print what was done and what is lost; return its status after."""
    from . import integrity
    from .store import RunStore, locked

    store = RunStore.open(path)
    with locked(store):
        verdict = integrity.verify(store)
        if not verdict.problems:
            err.print(f"{path}: intact, nothing to repair")
            return store.manifest().get("status", "unknown")
        for problem in verdict.problems:
            err.print(f"found: {escape(str(problem))}")
        try:
            outcome = integrity.repair(store)
        except integrity.Unrepairable as exc:
            err.print(f"[red]cannot repair:[/] {escape(str(exc))}")
            return "damaged"
    for action in outcome.actions:
        err.print(f"repaired: {escape(action)}")
    for lost in outcome.lost:
        err.print(f"[yellow]lost:[/] {escape(lost)}")
    err.print(f"{path}: status {outcome.status}")
    return outcome.status


def _presets(args: argparse.Namespace, err: Console) -> int:
    out = Console(highlight=False, soft_wrap=True)
    for name, _path in sorted(presets().items()):
        raw = read_source(name)
        size = f"{raw.get('replicates', '?')}×{raw.get('generations', '?')}"
        out.print(f"[bold]{name:<22}[/] {size:>9}  {escape(str(raw.get('description', '')))}")
    studies = study_presets()
    if studies:
        out.print("\n[bold]studies[/] (modelcollapse run NAME: every cell, one table and one report)")
    for name in sorted(studies):
        raw = read_source(name)
        out.print(f"[bold]{name:<22}[/] {_study_size(raw) or '':>9}  {escape(str(raw.get('description', '')))}")
    from . import plugins

    added = {what: {k: v for k, v in entries.items() if "plug-in" in v} for what, entries in plugins.listing().items()}
    lines = [f"  {what} {name}: {where}" for what, entries in added.items() for name, where in sorted(entries.items())]
    if lines:
        out.print("\n[bold]installed plug-ins[/] (modelcollapse plugins lists everything)")
        for line in lines:
            out.print(line, markup=False)
    return EXIT_OK


def _study_size(raw: dict) -> str | None:
    """"N cells" for a preset that is a study (counted without resolving it: the listing stays instant)."""
    from .study.spec import is_study, parse_seeds

    if not is_study(raw):
        return None
    n = max(1, len(raw.get("cells") or {}))
    for values in (raw.get("grid") or {}).values():  # a list, or a mapping of label: value
        n *= len(values) if isinstance(values, (list, dict)) else 1
    zipped = list((raw.get("zip") or {}).values())
    n *= len(zipped[0]) if zipped and isinstance(zipped[0], (list, dict)) else 1
    try:
        n *= len(parse_seeds(raw["seeds"])) if "seeds" in raw else 1
    except SpecError:
        pass
    return f"{n} cells"


def _report_broken_plugins(err: Console) -> None:
    """One line per plug-in that failed to load; the built-in entries and the other plug-ins still work."""
    from . import plugins

    plugins.load()
    if distributed.is_main():
        for problem in plugins.ERRORS:
            err.print(f"warning: {problem}", markup=False)


def _plugins(args: argparse.Namespace, err: Console) -> int:
    from . import plugins

    out = Console(highlight=False, soft_wrap=True)
    titles = {"model family": "model families (model.kind)", "data kind": "data kinds (data.kind)",
              "policy": "policies (policy.kind)", "metric": "metrics",
              "estimator": "estimators model.kind=sklearn may name besides sklearn.* classes"}
    for what, entries in plugins.listing().items():
        out.print(f"[bold]{titles.get(what, what)}[/]")
        for name, where in sorted(entries.items()):
            out.print(f"  {name:<24} {where}", markup=False)
        if not entries:
            out.print("  (none)")
    if plugins.ERRORS:
        out.print("[bold]failed to load[/]")
        for problem in plugins.ERRORS:
            out.print(f"  {problem}", markup=False)
    return EXIT_OK


def _show(args: argparse.Namespace, err: Console) -> int:
    from .resources import estimate

    if _is_study_source(args.spec):  # a study: its definition, then every cell (each validated)
        import yaml

        from .study import build

        study = build(args.spec, sets=args.overrides)
        sys.stdout.write(yaml.safe_dump(study.definition, sort_keys=False))
        sys.stdout.write(f"# {len(study.cells)} cells:\n" + "".join(f"#   {c.name}\n" for c in study.cells))
        total = [estimate(c.spec) for c in study.cells]
        err.print(f"estimated, all cells: {_human(sum(e.disk for e in total))} of disk; the largest cell: "
                  f"{escape(max(total, key=lambda e: e.memory).describe())}")
        return EXIT_OK
    spec = load_spec(args.spec, args.overrides)
    sys.stdout.write(spec.to_yaml())
    err.print(f"estimated: {escape(estimate(spec).describe())}")
    return EXIT_OK


def _human(n: float) -> str:
    from .resources import human

    return human(n)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
