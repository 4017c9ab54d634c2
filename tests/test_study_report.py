"""The study report: built from two tiny studies (a grid and named cells with sources of error), checked
for its sections, its embedded figures, the sentence on which source of error leads, and a failed cell."""

from __future__ import annotations

import base64
import html
import json
import re
import shutil
from pathlib import Path
from urllib.parse import unquote

import pandas as pd
import pytest
import yaml

from modelcollapse.report import write_report
from modelcollapse.report.study import write_study_report
from modelcollapse.study import build
from modelcollapse.study.results import write_results
from modelcollapse.study.runner import sweep

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
SMALL = {"replicates": 5, "generations": 5}


@pytest.fixture(scope="module")
def grid_study(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """2 x 2 gaussian grid; one cell gets its own report (to be linked), the others none (faster)."""
    out = tmp_path_factory.mktemp("studies") / "grid"
    study = build({"name": "grid", "description": "a <small> grid", "base": "gaussian", "set": SMALL,
                   "grid": {"train_size": [10, 100], "policy.kind": ["replace", "accumulate"]},
                   "report": {"heatmap": {"metric": "w2", "generation": 3, "x": "policy.kind", "y": "train_size"}}})
    assert sweep(study, out, workers=1, progress=False, cell_reports=False, report=False).ok
    write_report(out / json.loads((out / "study.json").read_text())["cells"][0]["path"])
    write_study_report(out)
    return out


@pytest.fixture(scope="module")
def errors_study(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three named cells as sources of error, crossed with a grid: read at the first grid value (replace).
    The sweep writes the report itself."""
    out = tmp_path_factory.mktemp("studies") / "errors"
    study = build({"name": "errors", "base": "gaussian", "set": SMALL,
                   "grid": {"policy.kind": ["replace", "accumulate"]},
                   "cells": {"few": {"train_size": 10}, "many": {"train_size": 200}, "both": {"train_size": 5}},
                   "errors": {"metric": ["no_such_metric", "w2"],
                              "sources": {"statistical": "few", "functional": "many", "all": "both"}}})
    assert sweep(study, out, workers=1, progress=False, cell_reports=False).ok
    return out


def images(text: str) -> list[bytes]:
    sources = re.findall(r"<img [^>]*src=\"([^\"]*)\"", text)
    assert sources and all(s.startswith("data:image/png;base64,") for s in sources)
    return [base64.b64decode(s.split(",", 1)[1], validate=True) for s in sources]


def plain(text: str) -> str:
    """The page's text without tags, entities unescaped, whitespace collapsed."""
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", re.sub(r"data:image[^\"]*", "", text))))


def test_grid_report(grid_study: Path) -> None:
    text = (grid_study / "report.html").read_text()
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*https?://""", text) and "<script" not in text.lower()
    pngs = images(text)
    assert len(pngs) == 2 and all(p[:8] == PNG_MAGIC for p in pngs)
    for name in ("study_metrics", "study_heatmap"):
        assert (grid_study / "figures" / f"{name}.png").read_bytes()[:8] == PNG_MAGIC
    words = plain(text)
    # the header: name, escaped description, status counts, axes, cells and settings
    assert "a <small> grid" in words and "&lt;small&gt;" in text
    assert "4 completed" in words and "train_size 10, 100" in words and "policy.kind replace, accumulate" in words
    assert "cells / settings 4 / 4" in words
    # the small multiples, with the Gaussian theory dashed; the heat map as configured
    assert "Metrics over generations" in words and "Dashed: the closed-form mean" in words
    assert "w2: the mean over replicates and seeds at generation 3, by policy.kind and train_size" in words
    assert "Sources of error" not in words  # the study names none
    # the cells: every one listed, only the one with a report linked, relative and resolvable
    index = json.loads((grid_study / "study.json").read_text())
    hrefs = re.findall(r"<a href=\"([^\"]*)\"", text)
    assert hrefs == [f"{index['cells'][0]['path']}/report.html"]
    assert (grid_study / unquote(hrefs[0])).is_file()
    for cell in index["cells"]:
        assert cell["name"] in words
    assert text.count("<td><span class='status completed'>completed</span></td>") == 4


def test_heatmap_config_problems_are_notes(grid_study: Path, tmp_path: Path) -> None:
    study = Path(shutil.copytree(grid_study, tmp_path / "copy"))
    definition = yaml.safe_load((study / "study.yaml").read_text())
    definition["report"] = {"heatmap": {"metric": "nope", "generation": 99, "x": "policy.kind", "y": "policy.kind"}}
    (study / "study.yaml").write_text(yaml.safe_dump(definition))
    words = plain(write_study_report(study).read_text())
    assert "report.heatmap.metric 'nope' is not in the results" in words
    assert "report.heatmap.generation 99 is not a generation of 0-5" in words
    assert "report.heatmap.y 'policy.kind' is not a further axis" in words
    # defaults: the first metric, the last generation, the other varying axis
    first = pd.read_parquet(study / "aggregate.parquet")["metric"].iloc[0]
    assert f"{first}: the mean over replicates and seeds at generation 5, by policy.kind and train_size" in words


def test_one_varying_axis_has_no_heatmap(errors_study: Path) -> None:
    words = plain((errors_study / "report.html").read_text())
    assert "No heat map: it needs two axes with more than one value each" not in words  # policy.kind x variant
    assert "by policy.kind and variant" in words


def _at(agg: pd.DataFrame, index: dict, labels: dict[str, str], g: int) -> dict[str, pd.Series]:
    """Each source's row of the aggregate at generation g, at the first grid value (policy.kind=replace)."""
    setting = {c["variant"]: c["setting"] for c in reversed(index["cells"]) if c["values"]["policy.kind"] == "replace"}
    rows = agg[(agg["metric"] == "w2") & (agg["generation"] == g)].set_index("setting")
    return {label: rows.loc[setting[variant]] for label, variant in labels.items()}


def test_errors_section_names_the_leading_source(errors_study: Path) -> None:
    text = (errors_study / "report.html").read_text()
    words = plain(text)
    assert "Sources of error" in words and (errors_study / "figures" / "study_errors.png").is_file()
    assert all(p[:8] == PNG_MAGIC for p in images(text))
    agg = pd.read_parquet(errors_study / "aggregate.parquet")
    index = json.loads((errors_study / "study.json").read_text())
    sources = {"statistical": "few", "functional": "many", "all": "both"}
    for g in (1, 5):
        at = _at(agg, index, sources, g)
        singles = sorted(["statistical", "functional"], key=lambda k: -at[k]["mean"])
        lead, runner = at[singles[0]], at[singles[1]]
        said = [html.unescape(p) for p in re.findall(rf"<p>(At generation {g},.*?)</p>", text)]
        assert len(said) == 1, words
        sentence = re.fullmatch(r"At generation \d+, (\w+) alone moves the model furthest \(w2 ([^)]*)\)(.*)", said[0])
        assert sentence, said[0]
        assert sentence.group(1) == singles[0]
        assert sentence.group(2).startswith(f"{lead['mean']:.3g} [")
        overlap = lead["ci_low"] <= runner["ci_high"]
        assert ("cannot be told apart" in sentence.group(3)) == overlap
        assert f"all together: {at['all']['mean']:.3g} [" in sentence.group(3)
        # the table has the generation's row with every source's mean
        row = re.search(rf"<tr><td>{g}</td>(.*?)</tr>", text).group(1)
        for label in sources:
            assert f"{at[label]['mean']:.3g} [" in row


def test_errors_problems_are_notes(errors_study: Path, tmp_path: Path) -> None:
    study = Path(shutil.copytree(errors_study, tmp_path / "copy"))
    definition = yaml.safe_load((study / "study.yaml").read_text())
    definition["errors"] = {"metric": "nope", "sources": {"statistical": "few", "other": "missing-cell"}}
    (study / "study.yaml").write_text(yaml.safe_dump(definition))
    words = plain(write_study_report(study).read_text())
    assert "errors.sources.other: 'missing-cell' is not a named cell of this study" in words
    assert "errors.metric: none of nope has results for every source" in words
    assert "Cells" in words


def test_failed_cell_and_missing_results(grid_study: Path, tmp_path: Path) -> None:
    study = Path(shutil.copytree(grid_study, tmp_path / "copy"))
    index = json.loads((study / "study.json").read_text())
    bad = index["cells"][-1]
    error = "RuntimeError: <b>boom</b> " + "x" * 400
    bad.update(status="failed", error=error, seconds=0.5)
    index["status"] = "failed"
    (study / "study.json").write_text(json.dumps(index))
    shutil.rmtree(study / bad["path"])
    write_results(study)  # the failed setting is gone from the aggregate
    text = write_study_report(study).read_text()
    words = plain(text)
    assert "3 completed" in words and "1 failed" in words
    assert "<span class='status failed'>failed</span>" in text
    assert "RuntimeError: <b>boom</b>" in words and "&lt;b&gt;boom" in text and "x" * 300 not in text
    assert f"No results for: {bad['setting']}" in words
    assert all(p[:8] == PNG_MAGIC for p in images(text))
    # without any results: the page says so and still lists the cells
    (study / "aggregate.parquet").unlink()
    words = plain(write_study_report(study).read_text())
    assert "No results yet" in words and bad["name"] in words and "Heat map" not in words
