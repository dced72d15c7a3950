"""Every command's --help renders: rich markup in a docstring (e.g. "[/x]") must not crash the CLI."""

import pytest
import typer.main

from radsearch.cli.main import app, main


def _command_paths(group, prefix=()):
    for name, command in getattr(group, "commands", {}).items():
        yield prefix + (name,)
        yield from _command_paths(command, prefix + (name,))


ROOT = typer.main.get_command(app)
PATHS = sorted(_command_paths(ROOT))


def test_every_area_is_registered():
    top = {path[0] for path in PATHS}
    assert {"cohort", "synth", "evaluate", "train", "index", "search", "serve", "mmdl"} <= top


@pytest.mark.parametrize("path", [()] + PATHS, ids=lambda p: " ".join(p) or "radsearch")
def test_help_renders(path, capsys):
    assert main([*path, "--help"]) == 0
    out = capsys.readouterr().out
    assert "Usage" in out
