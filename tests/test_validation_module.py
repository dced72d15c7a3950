"""One parameter-validation module (radsearch.validation), imported directly by every package."""

import ast
from pathlib import Path

import pytest

import radsearch
from radsearch.errors import ConfigError

SRC = Path(radsearch.__file__).parent


def test_every_module_imports_the_checks_from_radsearch_validation():
    offenders = []
    for path in sorted(SRC.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").endswith("validation") \
                    and node.module != "radsearch.validation":
                offenders.append(f"{path.relative_to(SRC)}:{node.lineno} {node.module}")
    assert offenders == []
    assert not (SRC / "losses" / "validation.py").exists(), "an unused re-export module"


def test_automargin_parameters_are_still_checked():
    from radsearch.losses.automargin import AutoMargin

    with pytest.raises(ConfigError, match="median"):
        AutoMargin(rule="median")
    with pytest.raises(ConfigError, match="k_delta"):
        AutoMargin(k_delta=0.5)
