"""The engine's core names no family, data kind or policy: each lives in its own module and registers
itself, so a new one (built in or from a plug-in) touches none of the files checked here."""

import ast
from pathlib import Path

import pytest

import modelcollapse
from modelcollapse.data import DATA
from modelcollapse.models import MODELS
from modelcollapse.policies import POLICIES

PACKAGE = Path(modelcollapse.__file__).parent
CORE = ["chain.py", "loop.py", "store.py", "config.py", "cli.py", "rng.py", "batch.py", "registry.py", "plugins.py",
        "params.py", "distributed.py", "report/run.py", "report/page.py", "report/sections.py",
        "report/figures.py", "report/section.py", "report/__init__.py", "report/theory.py",
        "study/spec.py", "study/index.py", "study/cell.py", "study/backends.py", "study/runner.py", "study/results.py",
        "report/study.py", "trackers/base.py", "trackers/records.py", "trackers/export.py", "notebook.py",
        "progress.py"]
#: The one deliberate exception: the default experiment (no data, model or policy given) is the paper's
#: Gaussian chain under the replace policy.
ALLOWED = {("config.py", "gaussian"), ("config.py", "replace")}
FAMILY_MODULES = {"models." + n for n in ("gaussian", "gmm", "kde", "categorical", "ngram", "vae", "transformer",
                                          "sklearn_adapter")}
DATA_MODULES = {"data." + n for n in ("continuous", "discrete", "images", "image_files", "text", "text_files")}


def _names() -> set[str]:
    return set(MODELS.names()) | set(DATA.names()) | set(POLICIES.names())


def _classes() -> set[str]:
    families = {MODELS.get(k).cls.__name__ for k in MODELS.names()}
    kinds = {DATA.get(k).__name__ for k in DATA.names()}
    return families | kinds | {"ImageDataset", "TextDataset", "ImageSource", "TextSource", "CategoricalSource"}


@pytest.mark.parametrize("module", CORE)
def test_core_modules_name_no_family_data_kind_or_policy(module):
    tree = ast.parse((PACKAGE / module).read_text())
    names, classes = _names(), _classes()
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in names:
            if (module, node.value) not in ALLOWED:
                found.append(f"line {node.lineno}: string {node.value!r}")
        if isinstance(node, ast.Name) and node.id in classes:
            found.append(f"line {node.lineno}: class {node.id}")
        if isinstance(node, ast.ImportFrom) and node.module:
            target = node.module.lstrip(".")
            if target in FAMILY_MODULES | DATA_MODULES:
                found.append(f"line {node.lineno}: imports {node.module}")
    assert not found, f"{module} knows specific families/data kinds: {found}"


def test_the_check_would_catch_a_branch_on_a_data_kind(tmp_path):
    """The test above can fail: the old chain's branch on images is what it looks for."""
    code = "from .data.images import ImageDataset\nif isinstance(truth, ImageDataset) or kind == 'text': pass\n"
    tree = ast.parse(code)
    hits = [n for n in ast.walk(tree) if (isinstance(n, ast.Name) and n.id in _classes())
            or (isinstance(n, ast.Constant) and n.value in _names())]
    assert len(hits) == 2


def test_every_family_is_known_without_its_optional_dependencies(tmp_path):
    """Specs of the PyTorch families validate without torch installed; running one says what to install,
    exits 2 and writes nothing."""
    import subprocess
    import sys

    out = tmp_path / "run"
    code = f"""
import sys

class NotInstalled:  # as if torch were not installed: importing it (or asking where it is) fails
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("torch", "transformers", "accelerate"):
            raise ModuleNotFoundError(f"No module named {{name!r}}")

sys.meta_path.insert(0, NotInstalled())
from modelcollapse.cli import main
assert main(["show", "vae-digits"]) == 0
assert main(["show", "lm-tiny"]) == 0
assert main(["run", "vae-digits", "--set", "replicates=1", "--out", {str(out)!r}]) == 2
print("torch imported:", "torch" in sys.modules)
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "torch imported: False" in done.stdout
    assert "needs torch" in done.stderr and "pip install" in done.stderr
    assert not out.exists()
