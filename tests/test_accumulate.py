"""Accumulating chains from running sufficient statistics: the numbers of a refit on the whole pool,
without the pool."""

from __future__ import annotations

import numpy as np
import pytest

from modelcollapse.chain import Chain
from modelcollapse.config import load_spec
from modelcollapse.models import CategoricalModel, GaussianModel
from modelcollapse.resources import estimate

CASES = {
    "gaussian": ("gaussian", GaussianModel, ["replicates=5", "generations=60", "train_size=30",
                                     "data.mean=[1.0, -2.0, 0.5]", "data.cov=[[1, 0.3, 0], [0.3, 2, 0], [0, 0, 0.5]]"]),
    "gaussian-unbiased": ("gaussian", GaussianModel, ["replicates=5", "generations=60", "train_size=10",
                                                      "model.estimator=unbiased"]),
    "categorical": ("discrete", CategoricalModel, ["replicates=5", "generations=60", "train_size=40"]),
}


def _chain_metrics(spec) -> tuple[Chain, list[dict[str, np.ndarray]]]:
    chain = Chain(spec)
    out = [chain.first().metrics]
    for g in range(1, spec.generations + 1):
        out.append(chain.step(g).metrics)
    chain.close()
    return chain, out


@pytest.mark.parametrize("case", list(CASES))
def test_statistics_give_the_numbers_of_a_refit_on_the_pool(case, monkeypatch):
    preset, cls, overrides = CASES[case]
    spec = load_spec(preset, [*overrides, "policy.kind=accumulate"])
    chain, fast = _chain_metrics(spec)
    assert chain.incremental and chain.history == []  # no pool kept
    monkeypatch.setattr(cls, "fit_statistics", None)  # the family without statistics: the pool is refitted
    chain, pooled = _chain_metrics(spec)
    assert not chain.incremental and len(chain.history) == spec.generations
    for a, b in zip(fast, pooled):
        for name in a:
            if cls is CategoricalModel:  # integer counts: exactly the same
                np.testing.assert_array_equal(a[name], b[name], err_msg=name)
            else:
                # Float rounding only: sums of 60 sets added one by one instead of in one pass, and the
                # covariance from shifted sums; 1e-9 relative is a million times the rounding of a
                # covariance but a thousand times below one generation's sampling noise (1/sqrt(n)).
                np.testing.assert_allclose(a[name], b[name], rtol=1e-9, atol=1e-12, err_msg=name)


def test_the_estimate_counts_no_pool_for_a_chain_that_keeps_statistics():
    base = ["replicates=100", "generations=1000", "train_size=1000"]
    stats = estimate(load_spec("gaussian", [*base, "policy.kind=accumulate"]))
    pool = estimate(load_spec("gaussian", [*base, "policy.kind=accumulate_subsample"]))
    assert pool.parts["training sets (memory)"] > 200 * stats.parts["training sets (memory)"]
    assert pool.memory > 800e6  # 100 x 1001 x 1000 doubles: said up front


@pytest.mark.parametrize("damaged", [None, "checkpoint.npz"])
def test_a_statistics_chain_resumes_from_its_checkpoints_to_the_same_numbers(damaged, tmp_path):
    """The statistics live in the checkpoints (no synthetic set is stored): a resume, or a repair that
    falls back to the previous checkpoint, continues to the numbers of a straight run."""
    from test_integrity import damage

    from modelcollapse.cli import main
    from modelcollapse.loop import run
    from modelcollapse.store import RunStore

    base = ["replicates=4", "generations=12", "train_size=20", "checkpoint_every=4", "policy.kind=accumulate"]
    straight = run(load_spec("gaussian", [*base, "generations=16"]), tmp_path / "straight", progress=False)
    out = tmp_path / "run"
    run(load_spec("gaussian", base), out, progress=False)
    assert not RunStore(out).tensor_names(RunStore(out).generation_file(5), "synthetic_")
    if damaged:
        damage(out / damaged, "truncated")
        assert main(["repair", str(out)]) == 0
    assert main(["run", "--resume", "--out", str(out), "--set", "generations=16", "-q", "--no-report"]) == 0
    assert RunStore(out).read_jsonl("metrics.jsonl") == straight.read_jsonl("metrics.jsonl")
