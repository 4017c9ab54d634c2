"""Every preset end to end through the CLI at a small size, with its report, giving the numbers recorded
from main before the architecture change (``tests/golden.py`` made ``tests/data/golden_presets.json``);
and the resolved spec of every preset against the YAML ``modelcollapse show`` printed then."""

import json
import math

import pytest

from golden import GOLDEN, SMALL, TORCH_PRESETS
from modelcollapse.cli import main
from modelcollapse.config import load_spec, presets
from modelcollapse.store import RunStore

RECORDED = json.loads(GOLDEN.read_text())
SHOWN = GOLDEN.parent / "show"


def _close(a, b, rtol: float) -> bool:
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_close(x, y, rtol) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_close(a[k], b[k], rtol) for k in a)
    if isinstance(a, float) and isinstance(b, (int, float)) and not isinstance(b, bool):
        return (math.isinf(a) and a == b) or math.isclose(a, b, rel_tol=rtol, abs_tol=rtol * 1e-3)
    return a == b


# numpy and scikit-learn code runs the same operations in the same order as before: the numbers agree to
# the last bits (1e-12 leaves room for nothing but a reordered sum). PyTorch's CPU kernels are reproducible
# on one machine for a fixed thread count, but may pick other instruction sets elsewhere; 1e-6 relative
# is far below any change a refactor could make to training (a different seed or data order moves these
# metrics by 1e-2 or more).
@pytest.mark.parametrize("name", sorted(SMALL))
def test_every_preset_runs_end_to_end_with_its_report_and_the_numbers_recorded_before(name, tmp_path):
    if name in TORCH_PRESETS:
        pytest.importorskip("torch")
    out = tmp_path / name
    assert main(["run", name, *[a for o in SMALL[name] for a in ("--set", o)], "--out", str(out), "-q"]) == 0
    store = RunStore.open(out)
    assert store.manifest()["status"] == "completed"
    assert (out / "report.html").stat().st_size > 10_000 and list((out / "figures").glob("*.png"))
    got = {"metrics": store.read_jsonl("metrics.jsonl"), "provenance": store.read_jsonl("provenance.jsonl")}
    spec = load_spec(name, SMALL[name])
    assert len(got["metrics"]) == spec.replicates * (spec.generations + 1)
    want = RECORDED[name]
    rtol = 1e-6 if name in TORCH_PRESETS else 1e-12
    assert len(got["metrics"]) == len(want["metrics"])
    for row, expected in zip(got["metrics"], want["metrics"]):
        assert _close(row, expected, rtol), f"{name}: {row} != {expected}"
    assert _close(got["provenance"], want["provenance"], rtol)


@pytest.mark.parametrize("name", sorted(presets()))
def test_show_prints_the_same_resolved_spec_as_before(name):
    assert load_spec(name).to_yaml() == (SHOWN / f"{name}.yaml").read_text()
