"""``train_size`` as a schedule over generations: validation, and every family running on one."""

import numpy as np
import pytest

from golden import SMALL, TORCH_PRESETS
from modelcollapse.chain import Chain
from modelcollapse.cli import main
from modelcollapse.config import SpecError, load_spec
from modelcollapse.schedules import LinearSchedule, PowerSchedule, describe, sizes
from modelcollapse.store import RunStore


def test_the_four_forms_give_the_sizes_they_say():
    assert sizes(7, 3).tolist() == [7, 7, 7, 7]
    assert sizes(LinearSchedule(kind="linear", a=3, b=10), 3).tolist() == [10, 13, 16, 19]
    assert sizes(PowerSchedule(kind="power", M0=10, p=1.5), 3).tolist() == [10, 28, 52, 80]  # round(10 (g+1)^1.5)
    assert sizes([5, 6, 9, 100], 2).tolist() == [5, 6, 9]  # extra entries: room for --resume to extend
    assert "power" in describe(PowerSchedule(kind="power", M0=10, p=2), 3) and "160" in describe(
        PowerSchedule(kind="power", M0=10, p=2), 3)


@pytest.mark.parametrize("value, generations, fragments", [
    ("{kind: linear, a: 0.5, b: 10}", 5, ["generation 1", "10.5", "not a whole number"]),
    ("{kind: linear, a: -10, b: 30}", 5, ["generation 3", "at least 1"]),
    ("[5, 6]", 5, ["no size for generation 2"]),
    ("[5, 0, 6]", 2, ["entry 1", "positive integers"]),
    ("{kind: power, M0: 10, p: 40}", 100, ["above"]),
    ("{kind: geometric, r: 2}", 5, ["train_size.kind", "geometric", "linear", "power"]),
    ("{kind: power, M0: 10}", 5, ["train_size.p", "required"]),
    ("[5, 1, 6]", 2, ["train_size", "1 at generation 1", "2 examples a gaussian fit needs"]),
])
def test_a_bad_schedule_is_refused_at_validation_with_the_generation(value, generations, fragments):
    with pytest.raises(SpecError) as info:
        load_spec("gaussian", [f"train_size={value}", f"generations={generations}"])
    for fragment in fragments:
        assert fragment in str(info.value), str(info.value)


def test_family_and_policy_limits_are_checked_for_every_generation():
    with pytest.raises(SpecError, match="n_components: 3 exceeds train_size 2 at generation 1"):
        load_spec("gmm", ["model.n_components=3", "train_size=[10, 2, 10]", "generations=2"])
    with pytest.raises(SpecError, match="mix keeps 15 real examples at generation 2"):
        load_spec("gaussian", ["policy={kind: mix, real_fraction: 0.5}", "train_size={kind: linear, a: 10, b: 10}",
                               "generations=3"])
    load_spec("gaussian", ["policy={kind: fresh, real_fraction: 0.5}", "train_size={kind: linear, a: 10, b: 10}",
                           "generations=3"])  # fresh draws new real data: no limit


@pytest.mark.parametrize("policy", ["replace", "mix", "fresh", "accumulate", "accumulate_subsample"])
def test_each_policy_builds_training_sets_of_the_scheduled_size(policy):
    """The provenance of every generation: M_g examples (accumulate: M_0 + ... + M_g)."""
    spec = load_spec("gaussian", ["replicates=3", "generations=4", "train_size=[20, 10, 30, 25, 40]",
                                  f"policy.kind={policy}"] + (["policy.real_fraction=0.2"] if policy in ("mix", "fresh")
                                                              else []))
    chain = Chain(spec)
    gens = [chain.first()] + [chain.step(g) for g in range(1, 5)]
    m = spec.sizes()
    for g, gen in enumerate(gens):
        total = np.asarray(gen.provenance).sum(axis=1)
        want = m[: g + 1].sum() if policy == "accumulate" else m[g]
        assert (total == want).all(), (policy, g, total, want)
        if g:
            assert gen.synthetic.X.shape[1] == m[g]  # the set drawn from generation g - 1 has M_g examples


# One preset per family in the fast suite (vae-mnist is the cheapest VAE); the other VAE presets are slow.
SAME_FAMILY = {"vae-digits", "vae-minority", "paper-vae"}


@pytest.mark.parametrize("name", [n if n not in SAME_FAMILY else pytest.param(n, marks=pytest.mark.slow)
                                  for n in sorted(SMALL)])
def test_every_preset_runs_on_a_schedule(name, tmp_path):
    """Every family (a preset's small version) through the CLI with a list schedule, report included."""
    if name in TORCH_PRESETS:
        pytest.importorskip("torch")
    base = load_spec(name, SMALL[name])
    m0 = base.max_train_size
    schedule = [m0, max(m0 // 2, 10), m0, m0, m0, m0][: base.generations + 1]
    out = tmp_path / name
    assert main(["run", name, *[a for o in SMALL[name] for a in ("--set", o)], "--set", f"train_size={schedule}",
                 "--out", str(out), "-q"]) == 0
    store = RunStore.open(out)
    assert store.manifest()["status"] == "completed"
    size = {r["generation"]: r["size"] for r in store.read_jsonl("provenance.jsonl")}  # mean over replicates
    assert size[0] == schedule[0]
    if base.policy.kind == "replace" and base.generations >= 1:
        assert size[1] == schedule[1]
    assert "train size" in (out / "report.html").read_text()
