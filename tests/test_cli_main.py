"""The CLI hub: user errors are one line with exit code 2, typer.Exit codes pass through."""

import subprocess
import sys

import typer

from radsearch.cli import main as cli


def test_user_error_is_one_line_without_traceback(tmp_path, capsys):
    code = cli.main(["cohort", "info", str(tmp_path / "missing.csv")])
    err = capsys.readouterr().err
    assert code == 2
    assert "missing.csv" in err and "Traceback" not in err
    assert err.startswith("error:")


def test_exit_codes_of_commands_pass_through(monkeypatch):
    app = typer.Typer()

    @app.command()
    def fail(code: int = 3) -> None:
        raise typer.Exit(code)

    @app.command()
    def other() -> None:
        """A second command so typer keeps sub-command names."""

    monkeypatch.setattr(cli, "app", app)
    assert cli.main(["fail", "--code", "3"]) == 3
    assert cli.main(["fail", "--code", "0"]) == 0


def test_usage_errors_exit_non_zero(capsys):
    assert cli.main(["no-such-command"]) == 2
    assert "No such command" in capsys.readouterr().err


def test_module_entry_point_prints_version():
    out = subprocess.run([sys.executable, "-m", "radsearch", "--version"], capture_output=True,
                         text=True, check=True).stdout
    assert out.strip().startswith("radsearch ")
