"""The examples in the package's docstrings run and print what they say."""

import doctest
import importlib
import pkgutil

import pytest

import modelcollapse

MODULES = sorted(m.name for m in pkgutil.walk_packages(modelcollapse.__path__, "modelcollapse.")
                 if not m.name.endswith("__main__"))


def _with_examples() -> list[str]:
    out = []
    for name in MODULES:
        spec = importlib.util.find_spec(name)
        if spec and spec.origin and ">>>" in open(spec.origin, encoding="utf-8").read():
            out.append(name)
    return out


@pytest.mark.parametrize("name", _with_examples())
def test_docstring_examples(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
