"""The HTML report: built from small real runs, checked for content and self-containment."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from modelcollapse.config import load_spec
from modelcollapse.loop import run
from modelcollapse.report import write_report
from modelcollapse.store import RunStore

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def make_run(base: Path, preset: str, *overrides: str) -> Path:
    out = base / preset
    run(load_spec(preset, list(overrides)), out, progress=False)
    return out


@pytest.fixture(scope="module")
def gaussian_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_run(tmp_path_factory.mktemp("runs"), "gaussian", "replicates=20", "generations=30")


@pytest.fixture
def gaussian_copy(gaussian_run: Path, tmp_path: Path) -> Path:
    """A private copy, for tests that alter the run directory."""
    return Path(shutil.copytree(gaussian_run, tmp_path / "copy"))


def reseal(run_dir: Path) -> None:
    """After a test has edited a generation file on purpose, record the edit in the checkpoint as if the
    run had written it (otherwise the integrity check, rightly, refuses the run as damaged)."""
    from modelcollapse.integrity import split_model, tensor_digest

    store = RunStore(run_dir)
    ck = store.read_npz("checkpoint.npz")
    g = int(ck["generation"])
    digests, models = [], []
    for k in range(g + 1):
        name = store.generation_file(k)
        content, model = split_model(store.read_tensors(name))
        digests.append(tensor_digest(content, store.tensor_metadata(name)))
        models.append(tensor_digest(model))
    ck["gen_digests"] = np.array(digests)
    ck["model_digests"] = np.array([models[0], models[g]])
    store.write_npz("checkpoint.npz", ck)


def check_self_contained(text: str) -> None:
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*https?://""", text)
    assert "<script" not in text.lower()
    images = re.findall(r"<img [^>]*src=\"([^\"]*)\"", text)
    assert images and all(src.startswith("data:image/png;base64,") for src in images)


def check_pngs(run_dir: Path, names: list[str]) -> None:
    for name in names:
        path = run_dir / "figures" / name
        assert path.is_file(), f"missing {name}; have {sorted(p.name for p in path.parent.iterdir())}"
        assert path.read_bytes()[:8] == PNG_MAGIC


def test_gaussian_report(gaussian_run: Path) -> None:
    html_path = write_report(gaussian_run)
    assert html_path == gaussian_run / "report.html"
    text = html_path.read_text()
    check_self_contained(text)
    for metric in ("mean_error", "variance_ratio", "w2", "kl"):
        assert metric in text
    metrics = [f"metric_{m}.png" for m in ("mean_error", "variance_ratio", "w2", "kl")]
    check_pngs(gaussian_run, [*metrics, "density.png", "provenance.png"])
    # The theory: drawn over its metrics, tabulated against the replicates, and the collapse figure.
    assert "Red: theory (exact)" in text and "Theory vs simulation" in text
    check_pngs(gaussian_run, ["theory_p_collapsed.png", "theory_schedules.png"])
    rows = re.findall(r"<tr><td>(\w+)</td><td>(\w+)</td><td>(\d+)</td><td>exact</td>.*?<td>([^<]*)</td></tr>", text)
    assert {("variance_ratio", "median"), ("mean_error", "mean"), ("w2", "rms"), ("kl", "mean")} <= {
        r[:2] for r in rows}
    assert "completed" in text and "<h1>gaussian</h1>" in text
    assert "Files in the run directory" in text and "gen_000030.safetensors" in text


def test_report_twice_overwrites_and_removes_stale_figures(gaussian_copy: Path) -> None:
    write_report(gaussian_copy)
    figures = gaussian_copy / "figures"
    index = figures / ".report-figures.json"
    # As if an earlier report had drawn a metric this one no longer has: in its index, and on disk.
    index.write_text(json.dumps([*json.loads(index.read_text()), "metric_gone.png"]))
    (figures / "metric_gone.png").write_bytes(PNG_MAGIC)
    (figures / "mine.png").write_bytes(PNG_MAGIC)  # not the report's: must be left alone
    first = sorted(p.name for p in figures.iterdir())
    write_report(gaussian_copy)
    second = sorted(p.name for p in figures.iterdir())
    assert second == sorted(set(first) - {"metric_gone.png"})
    assert not [p for p in gaussian_copy.rglob("*.tmp")]
    check_self_contained((gaussian_copy / "report.html").read_text())


def test_report_over_one_written_before_the_figure_index(gaussian_copy: Path) -> None:
    """Reports of version 0.1 kept no index: their own figure names are recognised and replaced."""
    figures = gaussian_copy / "figures"
    figures.mkdir(exist_ok=True)
    (figures / ".report-figures.json").unlink(missing_ok=True)
    (figures / "metric_gone.png").write_bytes(PNG_MAGIC)
    (figures / "mine.png").write_bytes(PNG_MAGIC)
    write_report(gaussian_copy)
    names = {p.name for p in figures.iterdir()}
    assert "metric_gone.png" not in names and "mine.png" in names and "density.png" in names


def test_partial_run_states_status(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from modelcollapse.chain import Chain

    step = Chain.step

    def interrupted(self, g):
        if g == 30:
            raise KeyboardInterrupt
        return step(self, g)

    monkeypatch.setattr(Chain, "step", interrupted)
    out = tmp_path / "partial"
    with pytest.raises(KeyboardInterrupt):
        run(load_spec("gaussian", ["replicates=20", "generations=40", "checkpoint_every=10"]), out, progress=False)
    with open(out / "metrics.jsonl", "a") as fh:
        fh.write('{"replicate": 0, "generation": 3')  # a torn last line after the checkpoint: tolerated
    text = write_report(out).read_text()
    assert "interrupted" in text
    assert "0–29 (planned: 0–40)" in text
    check_pngs(out, ["metric_variance_ratio.png", "density.png"])


def test_failed_run_shows_error_and_stopped_replicates(gaussian_copy: Path) -> None:
    manifest = json.loads((gaussian_copy / "manifest.json").read_text())
    manifest.update(status="failed", error="FitError: <boom> & co", stopped={"3": "LinAlgError: singular"})
    (gaussian_copy / "manifest.json").write_text(json.dumps(manifest))
    text = write_report(gaussian_copy).read_text()
    assert "failed" in text
    assert "FitError: &lt;boom&gt; &amp; co" in text  # escaped
    assert "Stopped replicates" in text and "LinAlgError: singular" in text


def test_collapsed_and_stopped_fits_do_not_crash(gaussian_copy: Path) -> None:
    """A zero-variance fit (a point mass) and an all-NaN stopped replicate in the last generation."""
    store = RunStore(gaussian_copy)
    name = store.generation_file(30)
    arrays = {k: v.copy() for k, v in store.read_tensors(name).items()}
    arrays["model/covariance"][0] = 0.0
    arrays["model/mean"][1] = np.nan
    arrays["stopped"][1] = True
    store.write_tensors(name, arrays)
    reseal(gaussian_copy)
    write_report(gaussian_copy)
    check_pngs(gaussian_copy, ["density.png"])


def test_single_generation(tmp_path: Path) -> None:
    run_dir = make_run(tmp_path, "gaussian", "replicates=5", "generations=0")
    text = write_report(run_dir).read_text()
    check_self_contained(text)
    check_pngs(run_dir, ["metric_variance_ratio.png", "density.png", "provenance.png"])


def test_gmm_report_2d_density_and_weights(tmp_path: Path) -> None:
    run_dir = make_run(tmp_path, "gmm", "replicates=2", "generations=3", "train_size=200", "workers=1",
                       "heldout_size=200", "metric_samples=100")
    text = write_report(run_dir).read_text()
    check_self_contained(text)
    for metric in ("l2_distance", "nll", "tail_mass", "variance_ratio", "component_weights"):
        assert metric in text
    check_pngs(run_dir, ["density.png", "vector_component_weights.png", "metric_l2_distance.png"])
    assert not (run_dir / "figures" / "metric_component_weights.png").exists()  # vectors get no curve


def test_kde_report_1d_density(tmp_path: Path) -> None:
    run_dir = make_run(tmp_path, "kde", "replicates=2", "generations=3", "train_size=100",
                       "heldout_size=200", "metric_samples=100")
    write_report(run_dir)
    check_pngs(run_dir, ["density.png", "metric_nll.png", "metric_w1.png"])


def test_keep_params_ends_draws_only_the_generations_that_kept_their_parameters(tmp_path: Path) -> None:
    """Generations 1..5 lost their parameters: the density figure draws 0 and 6 instead of failing on 3."""
    run_dir = make_run(tmp_path, "kde", "replicates=2", "generations=6", "train_size=100", "heldout_size=200",
                       "metric_samples=100", "keep_params=ends", "report.density_generations=[0, 3, 6]")
    text = write_report(run_dir).read_text()
    check_pngs(run_dir, ["density.png"])
    assert "generation 3" not in text


def test_discrete_report(tmp_path: Path) -> None:
    run_dir = make_run(tmp_path, "discrete", "replicates=10", "generations=40")
    text = write_report(run_dir).read_text()
    check_self_contained(text)
    for metric in ("tv", "kl", "entropy", "support_size", "tail_mass", "gini_simpson"):
        assert f"metric_{metric}" in text
    check_pngs(run_dir, ["categorical_rare.png", "categorical_heatmap.png", "metric_support_size.png"])
    assert not (run_dir / "figures" / "density.png").exists()
    assert "Red: theory (exact)" in text and "metric_support_size" in text
    check_pngs(run_dir, ["theory_p_collapsed.png"])


def test_a_run_without_theory_says_so_in_one_line(tmp_path: Path) -> None:
    run_dir = make_run(tmp_path, "kde", "replicates=2", "generations=2", "train_size=50", "heldout_size=50")
    text = write_report(run_dir).read_text()
    assert "<h2>Theory</h2><p>No closed form applies to a kde model" in text
    assert "Theory vs simulation" not in text


def test_accumulate_provenance(tmp_path: Path) -> None:
    run_dir = make_run(tmp_path, "gaussian-accumulate", "replicates=5", "generations=5")
    text = write_report(run_dir, progress=True).read_text()
    check_pngs(run_dir, ["provenance.png", "density.png"])
    assert "Training-set size 100 at generation 0, 600 at generation 5" in text
    # The pi^2/6 bound on the mean error is drawn and checked to hold.
    assert re.search(r"<td>mean_error</td><td>upper</td><td>\d+</td><td>bound</td>(<td>[^<]*</td>){3}<td>holds</td>",
                     text)


def test_density_of_thousands_of_narrow_kernels_stays_small(monkeypatch: pytest.MonkeyPatch) -> None:
    """A KDE of 10,000 narrow kernels once asked the 1-D density figure for a 9 GB matrix: the grid gets extra
    points for at most MAX_NARROW components, and the density is evaluated in slices that give the same values."""
    from modelcollapse.data import continuous

    rng = np.random.default_rng(0)
    n = 10_000
    kde = (np.full(n, 1.0 / n), rng.normal(size=(n, 1)), np.full((n, 1, 1), 0.03**2))
    x = continuous._grid_1d([kde] * 6, -4.0, 4.0)
    assert len(x) <= 800 + continuous.MAX_NARROW * 61
    small = (kde[0][:50] * 200, kde[1][:50], kde[2][:50])
    whole, _ = continuous._pdf_1d(small, x)
    monkeypatch.setattr(continuous, "PDF_CHUNK", 997)  # slices of 19 grid points
    sliced, _ = continuous._pdf_1d(small, x)
    np.testing.assert_allclose(sliced, whole, rtol=1e-12)
    assert abs(np.trapezoid(whole, x) - 1) < 1e-3  # a density: the grid resolves the narrow kernels
