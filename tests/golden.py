"""Small versions of the built-in presets, and the numbers they gave before the architecture change.

``python tests/golden.py`` re-records ``tests/data/golden_presets.json`` from the code that is checked
out. It was run once on main at commit 888b8eb (before the registries were rebuilt), so the test that
reads the file proves that the refactored engine gives the numbers users got before. Re-record only
when a change is *meant* to alter results, and say so in the commit.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

GOLDEN = Path(__file__).parent / "data" / "golden_presets.json"

#: preset -> overrides that make it take seconds; presets needing a hub or an extra download are left out
SMALL: dict[str, list[str]] = {
    "gaussian": ["replicates=4", "generations=5"],
    "gaussian-accumulate": ["replicates=4", "generations=5"],
    "discrete": ["replicates=4", "generations=5"],
    "gmm": ["replicates=2", "generations=3", "train_size=200", "workers=1", "model.backend=sklearn"],
    "kde": ["replicates=2", "generations=3", "train_size=100", "heldout_size=100"],
    "vae-digits": ["replicates=2", "generations=2", "train_size=200", "model.epochs=2", "metric_samples=100"],
    "vae-minority": ["replicates=2", "generations=2", "train_size=200", "model.epochs=2", "metric_samples=100"],
    "vae-mnist": ["replicates=1", "generations=1", "train_size=200", "model.epochs=1", "metric_samples=100"],
    "paper-vae": ["replicates=1", "generations=1", "train_size=256", "model.epochs=1", "metric_samples=100"],
    "lm-ngram": ["replicates=2", "generations=3", "train_size=100", "metric_samples=20"],
    "lm-tiny": ["replicates=1", "generations=1", "train_size=64", "metric_samples=16", "heldout_size=32",
                "model.epochs=1"],
}
#: families whose numbers come from PyTorch kernels (compared with a float tolerance, see the test)
TORCH_PRESETS = {"vae-digits", "vae-minority", "vae-mnist", "paper-vae", "lm-tiny"}


def record(name: str, out: Path) -> dict:
    from modelcollapse import load_spec, run

    store = run(load_spec(name, SMALL[name]), out, progress=False)
    return {"metrics": store.read_jsonl("metrics.jsonl"), "provenance": store.read_jsonl("provenance.jsonl")}


def main() -> None:
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in SMALL:
            print(name, file=sys.stderr)
            results[name] = record(name, Path(tmp) / name)
    GOLDEN.write_text(json.dumps(results, indent=0, allow_nan=True) + "\n")


if __name__ == "__main__":
    main()
