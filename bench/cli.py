"""Benchmark: how long the command line takes to answer when it runs nothing.

`modelcollapse presets`, `show` and a refused spec should answer at once: the heavy libraries
(scikit-learn, scipy, PyTorch, matplotlib, POT, pyarrow) load only when a run or a report needs
them. Each command is timed as a fresh process, median of several, against a bare interpreter
(`python -c pass`) and an interpreter that only imports numpy and pydantic, both measured in
the same run; the import time of `modelcollapse.cli` comes from `python -X importtime`.

    python bench/cli.py [--repeat 7]
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import time

COMMANDS = {
    "presets": ["-m", "modelcollapse", "presets"],
    "show gaussian": ["-m", "modelcollapse", "show", "gaussian"],
    "show lm-tiny": ["-m", "modelcollapse", "show", "lm-tiny"],
    "refused spec": ["-m", "modelcollapse", "show", "gaussian", "--set", "replicates=-1"],
}
BASELINES = {"python -c pass": ["-c", "pass"], "import numpy, pydantic": ["-c", "import numpy, pydantic"]}


def seconds(args: list[str], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        subprocess.run([sys.executable, *args], capture_output=True, check=False)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def import_time() -> float:
    """Cumulative import time of modelcollapse.cli, in seconds (python -X importtime)."""
    out = subprocess.run([sys.executable, "-X", "importtime", "-c", "import modelcollapse.cli"], capture_output=True,
                         text=True).stderr
    totals = [int(m.group(1)) for m in re.finditer(r"\|\s*(\d+) \| modelcollapse\.cli$", out, re.M)]
    return totals[-1] / 1e6 if totals else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    base = {name: seconds(cmd, args.repeat) for name, cmd in BASELINES.items()}
    for name, value in base.items():
        print(f"{name:<26} {value:6.3f} s")
    print(f"{'import modelcollapse.cli':<26} {import_time():6.3f} s (importtime, cumulative)")
    for name, cmd in COMMANDS.items():
        t = seconds(cmd, args.repeat)
        own = t - base["python -c pass"]
        print(f"{name:<26} {t:6.3f} s   own time {own:5.3f} s   ratio to numpy+pydantic {t / base['import numpy, pydantic']:4.2f}x")


if __name__ == "__main__":
    main()
