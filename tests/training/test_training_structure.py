"""Structure of the training package (issue 8): config validated at load, one run layout, no
import cycle, training/ holds the engine only."""

import ast
from pathlib import Path

import pytest

import radsearch
from radsearch.errors import ConfigError
from radsearch.training import load_config
from radsearch.training.rundir import RunDir

SRC = Path(radsearch.__file__).parent


@pytest.mark.parametrize("override, match", [
    ("model.name=resnet81", "model.name='resnet81'.*unknown backbone.*resnet18"),
    ("method.name=AdaTriplet-MA", "method.name=.*did you mean AdaTriplet-AM"),
    ("val.metric=n_skipped", "val.metric='n_skipped'.*not a validation metric.*mAP"),
    ("val.metric=map", "val.metric='map'.*not a validation metric"),
])
def test_names_are_validated_when_the_config_loads(override, match):
    with pytest.raises(ConfigError, match=match) as info:
        load_config(None, [override])
    assert "\n" not in str(info.value) and "Value error" not in str(info.value)


def test_known_names_load():
    cfg = load_config(None, ["model.name=cnn9", "method.name=Triplet", "val.metric=CMC@1"])
    assert (cfg.model.name, cfg.method.name, cfg.val.metric) == ("cnn9", "Triplet", "CMC@1")


RUN_FILES = {"config.yaml", "cohort.csv", "last.pt", "best.pt", "metrics.csv", "histograms.npz",
             "results.json", "summary.json", "references.json", "preprocessing.json",
             "tensorboard"}


def _modules(*packages: str):
    for package in packages:
        yield from sorted((SRC / package).glob("*.py"))


def test_run_folder_file_names_are_spelled_only_by_rundir():
    offenders = []
    for path in [*_modules("training", "reporting"), SRC / "cli" / "train.py"]:
        if path.name == "rundir.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) \
                    and node.value in RUN_FILES:
                offenders.append(f"{path.name}:{node.lineno} {node.value!r}")
    assert offenders == []


def test_rundir_layout_and_checkpoint_fallback(tmp_path):
    run = RunDir(tmp_path)
    assert {p.name for p in (run.config, run.cohort, run.last, run.best, run.metrics,
                             run.histograms, run.results, run.summary, run.references,
                             run.preprocessing, run.tensorboard)} == RUN_FILES
    with pytest.raises(ConfigError, match="not a radsearch run folder"):
        run.require()
    with pytest.raises(ConfigError, match="checkpoint not found"):
        run.checkpoint("best")
    run.last.write_bytes(b"x")
    assert run.checkpoint("best") == run.last   # before the first validation
    run.best.write_bytes(b"x")
    assert run.checkpoint("best") == run.best
    assert run.read_json("summary") == {}


def _imports(path: Path, package: str) -> set[str]:
    """radsearch modules imported anywhere in ``path`` (module level and inside functions)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
            out.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
    return {m for m in out if m.startswith("radsearch.")}


def test_training_and_reporting_import_graph_has_no_cycle():
    modules = {f"radsearch.{p.parent.name}.{p.stem}": p
               for p in _modules("training", "reporting") if p.stem != "__init__"}
    graph = {name: {m for m in _imports(path, name) if m in modules and m != name}
             for name, path in modules.items()}
    state: dict[str, int] = {}

    def visit(node, stack):
        state[node] = 1
        for nxt in graph[node]:
            if state.get(nxt) == 1:
                raise AssertionError("import cycle: " + " → ".join(stack + [node, nxt]))
            if nxt not in state:
                visit(nxt, stack + [node])
        state[node] = 2

    for name in graph:
        if name not in state:
            visit(name, [])


def test_training_holds_the_engine_and_never_imports_reporting():
    for path in _modules("training"):
        assert not any(m.startswith("radsearch.reporting") for m in _imports(path, "")), path.name
    assert not (SRC / "training" / "demo.py").exists()
    assert not (SRC / "training" / "report.py").exists()
