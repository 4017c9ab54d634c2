"""Notebooks: ``modelcollapse.open_run`` on finished, interrupted and study-cell runs (and the refusals), the
progress displays in Jupyter (no ANSI escape codes, with or without ipywidgets), and the example notebook,
executed in a kernel of this interpreter."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

import modelcollapse as mc
from modelcollapse.cli import main
from modelcollapse.notebook import RunView
from modelcollapse.progress import NotebookProgress, progress_bar
from modelcollapse.store import RunDirError, RunStore
from modelcollapse.study import build
from modelcollapse.study.runner import sweep

TINY = ["replicates=4", "generations=6", "metric_samples=200", "heldout_size=100"]
NOTEBOOK = Path(__file__).resolve().parent.parent / "examples" / "notebooks" / "collapse_study.ipynb"
ESC = "\x1b["


# -- runs to open ----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("nb") / "finished"
    mc.run(mc.load_spec("gaussian", TINY), out, progress=False)
    (out / "report.html").write_text("<html></html>")  # as `modelcollapse report` leaves it (its content is not read)
    return out


@pytest.fixture(scope="module")
def interrupted(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("nb") / "interrupted"

    def stop(g: int) -> None:
        if g == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        mc.run(mc.load_spec("gaussian", [*TINY, "generations=10", "checkpoint_every=2"]), out, progress=False,
               on_generation=stop)
    return out


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("nb") / "study"
    outcome = sweep(build("gaussian", grid=["train_size=10,50"], sets=TINY), out, workers=1, progress=False,
                    cell_reports=False, report=False)
    assert outcome.ok
    return out


# -- open_run --------------------------------------------------------------------------------------------
def test_a_finished_run(finished):
    run = mc.open_run(finished)
    assert isinstance(run, RunView) and "open_run" in mc.__all__
    assert run.spec == mc.load_spec(finished / "config.yaml")
    assert run.status == "completed" == run.manifest["status"]
    pd.testing.assert_frame_equal(run.metrics, mc.load_results(finished))
    assert len(run.metrics) == 4 * 7 and set(run.spec.metrics) <= set(run.metrics.columns)
    assert run.cell is None and run.study is None and run.report_path == finished / "report.html"
    text, html = repr(run), run._repr_html_()
    assert "gaussian" in text and "completed" in text and "4 replicates x 7/7 generations" in text
    for part in ("<b>gaussian</b>", "completed", "4 × 7 of 7 generations", "replace", "report.html",
                 "median at generation 6", "variance_ratio"):
        assert part in html, part


def test_provenance_is_the_provenance_file(finished):
    lines = RunStore(finished).read_jsonl("provenance.jsonl")
    prov = mc.open_run(finished).provenance
    assert list(prov["generation"]) == [ln["generation"] for ln in lines] == list(range(7))
    for column in ("size", "real", "synthetic", "sources"):
        assert list(prov[column]) == [ln[column] for ln in lines], column
    assert prov["real_share"].tolist() == [1.0] + [0.0] * 6  # replace: all synthetic after generation 0
    np.testing.assert_allclose(prov["real_share"] + prov["synthetic_share"], 1.0)


def test_plot_is_the_reports_figure(finished):
    run = mc.open_run(finished)
    fig = run.plot("variance_ratio")
    assert isinstance(fig, Figure)
    labels = [line.get_label() for line in fig.axes[0].get_lines()]
    assert "median" in labels and labels.count("single replicates") == 1
    assert "theory: median" in labels and "theory: E[variance_ratio]" in labels  # the closed form over it
    median = next(line for line in fig.axes[0].get_lines() if line.get_label() == "median")
    expected = run.metrics.groupby("generation")["variance_ratio"].median()
    np.testing.assert_allclose(median.get_ydata(), expected.to_numpy())
    with pytest.raises(KeyError) as err:
        run.plot("variance_ration")
    message = str(err.value)
    assert "did you mean 'variance_ratio'" in message and all(m in message for m in run.spec.metrics)


def test_an_interrupted_run(interrupted):
    run = mc.open_run(interrupted)
    assert run.status == "interrupted"
    assert sorted(run.metrics["generation"].unique()) == [0, 1, 2, 3]  # partial: the rows recorded before Ctrl-C
    pd.testing.assert_frame_equal(run.metrics, mc.load_results(interrupted))
    assert list(run.provenance["generation"]) == [0, 1, 2, 3]
    assert isinstance(run.plot("w2"), Figure)
    assert "4 × 4 of 11 generations" in run._repr_html_() and "interrupted" in run._repr_html_()
    assert "4/11 generations" in repr(run) and run.report_path is None


def test_a_study_cell_and_the_study_itself(study):
    cells = sorted((study / "cells").iterdir())
    run = mc.open_run(cells[0])
    assert run.status == "completed" and run.study == study.resolve()
    assert run.cell["name"] == cells[0].name and run.cell["setting"] == "train_size=10"
    pd.testing.assert_frame_equal(run.metrics, mc.load_results(cells[0]))
    assert "train_size=10, seed 0" in run._repr_html_()
    assert isinstance(run.plot("mean_error"), Figure)
    with pytest.raises(RunDirError) as err:
        mc.open_run(study)
    message = str(err.value)
    assert "study directory" in message and f"modelcollapse.load_results({str(study)!r})" in message
    assert all(str(cell) in message for cell in cells)


@pytest.mark.parametrize("what", ["empty", "missing", "file"])
def test_not_a_run_directory_is_the_command_lines_error(tmp_path, what, capsys):
    path = tmp_path / "x"
    if what == "empty":
        path.mkdir()
    elif what == "file":
        path.write_text("hello")
    with pytest.raises(RunDirError) as expected:
        RunStore.open(path)
    with pytest.raises(RunDirError) as err:
        mc.open_run(path)
    assert str(err.value) == str(expected.value)
    assert main(["report", str(path)]) == 2
    assert str(expected.value) in " ".join(capsys.readouterr().err.split())


# -- progress displays -----------------------------------------------------------------------------------
def test_progress_is_richs_own_outside_jupyter():
    from rich.progress import Progress, TextColumn

    bar = progress_bar(TextColumn("{task.description}"))
    assert type(bar) is Progress


def test_a_notebook_frame_has_html_and_plain_text_without_escape_codes():
    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn

    bar = NotebookProgress(TextColumn("[bold]{task.description}[/]"), BarColumn(), MofNCompleteColumn())
    bar.add_task("gaussian", total=5, completed=3)
    frame = bar.frame()
    assert "gaussian" in frame["text/plain"] and "3/5" in frame["text/plain"] and ESC not in frame["text/plain"]
    assert "font-weight: bold" in frame["text/html"] and "3/5" in frame["text/html"] and ESC not in frame["text/html"]
    assert bar.frame() == frame  # nothing accumulates between frames


# -- in a kernel -----------------------------------------------------------------------------------------
@pytest.fixture
def kernel(tmp_path, monkeypatch):
    """nbclient and a ``python3`` kernel spec that runs this interpreter (first on JUPYTER_PATH)."""
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("nbformat")
    pytest.importorskip("ipykernel")
    spec = tmp_path / "jupyter" / "kernels" / "python3"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3 (this interpreter)", "language": "python"}))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    monkeypatch.setenv("MPLBACKEND", "Agg")  # the notebook turns on inline figures itself

    def execute(nb, cwd: Path, timeout: int = 240):
        return nbclient.NotebookClient(nb, timeout=timeout, kernel_name="python3",
                                       resources={"metadata": {"path": str(cwd)}}).execute()
    return execute


def _escapes(node) -> list[str]:
    """Every text in a notebook (outputs, widget state, metadata) holding an ANSI escape code."""
    if isinstance(node, str):
        return [node] if ESC in node else []
    if isinstance(node, dict):
        return [t for value in node.values() for t in _escapes(value)]
    if isinstance(node, list):
        return [t for value in node for t in _escapes(value)]
    return []


def _outputs(nb) -> list[dict]:
    return [out for cell in nb.cells if cell.cell_type == "code" for out in cell.outputs]


def _texts(nb, mime: str) -> list[str]:
    return [out["data"][mime] for out in _outputs(nb) if mime in out.get("data", {})]


def test_the_example_notebook(kernel, tmp_path, monkeypatch):
    import nbformat

    nb = nbformat.read(NOTEBOOK, as_version=4)
    assert all(not c.get("outputs") and c.get("execution_count") is None for c in nb.cells if c.cell_type == "code")
    out = tmp_path / "study"
    monkeypatch.setenv("MODELCOLLAPSE_EXAMPLE_OUT", str(out))
    kernel(nb, NOTEBOOK.parent)
    outputs = _outputs(nb)
    assert not [o for o in outputs if o["output_type"] == "error"]
    assert not [o for o in outputs if o.get("name") == "stderr"], "warnings in the notebook"
    assert not _escapes(nb)  # outputs and any widget state alike
    progress = [t for t in _texts(nb, "text/html") if "<pre" in t and "study" in t]
    assert progress and "6/6" in progress[-1]  # the study's display, ending on its final state
    assert len(_texts(nb, "image/png")) >= 2  # the settings' curves and run.plot(...)
    summary = next(t for t in _texts(nb, "text/html") if "median at generation" in t)
    assert "completed" in summary and "train_size=10, seed 0" in summary
    # What it wrote: six completed cells, and the collapse it describes.
    index = json.loads((out / "study.json").read_text())
    assert [c["status"] for c in index["cells"]] == ["completed"] * 6
    df = mc.load_results(out)
    assert len(df) == 6 * 20 * 51
    final = df[df["generation"] == 50].groupby("train_size")["variance_ratio"].median()
    assert final[10.0] < 1e-3 < final[100.0] < final[1000.0]


def test_run_progress_in_a_kernel_without_ipywidgets(kernel, tmp_path):
    """rich's own Jupyter display needs ipywidgets (else it warns and draws nothing) and its text copy keeps
    ANSI codes; the run's bar is drawn without either, and ends on the final state."""
    from nbformat.v4 import new_code_cell, new_notebook

    block = """import sys

class NoWidgets:  # as if ipywidgets were not installed
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "ipywidgets":
            raise ModuleNotFoundError(f"No module named {name!r}")

sys.meta_path.insert(0, NoWidgets())"""
    runs = f"""import modelcollapse as mc
store = mc.run(mc.load_spec("gaussian", {TINY!r}), {str(tmp_path / 'run')!r})
print("ipywidgets" in sys.modules)"""
    nb = new_notebook(cells=[new_code_cell(block), new_code_cell(runs)])
    kernel(nb, tmp_path, timeout=120)
    outputs = nb.cells[1].outputs
    assert not _escapes(nb)
    assert [o["text"] for o in outputs if o["output_type"] == "stream"] == ["False\n"]  # no warning either
    frames = [o["data"] for o in outputs if o["output_type"] == "display_data"]
    assert len(frames) == 1 and "7/7" in frames[0]["text/plain"] and "× 4 replicates" in frames[0]["text/plain"]
