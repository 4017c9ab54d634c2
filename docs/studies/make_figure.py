"""The README's study figure: the built-in `sweep-policies` study, run at its default size, and the
heat map its study report draws (variance ratio at generation 100, policy x family).

    python docs/studies/make_figure.py        # about 2 minutes on 2 cores

The figure is the report's own PNG, copied; nothing is drawn here.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

from modelcollapse.report.study import write_study_report
from modelcollapse.study import build, sweep

HERE = Path(__file__).parent


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "sweep-policies"
        outcome = sweep(build("sweep-policies"), out, cell_reports=False, report=False, progress=sys.stderr.isatty())
        if not outcome.ok:
            print(f"cells failed: {outcome.failed}", file=sys.stderr)
            return 1
        write_study_report(out)
        shutil.copyfile(out / "figures" / "study_heatmap.png", HERE / "sweep_policies_heatmap.png")
        print(HERE / "sweep_policies_heatmap.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
