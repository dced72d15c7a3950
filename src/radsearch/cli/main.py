"""Entry point of the `radsearch` command.

Each area owns one module with a ``register(app)`` function (cohort, synth, evaluate, train…), so the
CLI stays a thin layer: parse arguments, call the Python API, print. User errors
(:class:`radsearch.errors.RadsearchError`) are printed as one line without a traceback, exit code 2.
"""

from __future__ import annotations

import sys

import typer
from radsearch import __version__
from radsearch.cli import cohort, evaluate, synth, train
from radsearch.cli import index as index_cli, mmdl, search as search_cli, serve
from radsearch.cli.console import console
from radsearch.errors import RadsearchError
from radsearch.io import DISK_ERRNOS, describe_output_error

app = typer.Typer(
    name="radsearch",
    help="Content-based X-ray retrieval: forensic matching across years and diagnostic retrieval.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        print(f"radsearch {__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                       help="Print the version and exit.")) -> None:
    """radsearch command line."""


for module in (cohort, synth, evaluate, train, index_cli, search_cli, serve, mmdl):
    module.register(app)
serve.register(app)


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; a RadsearchError becomes one red line on stderr and exit code 2."""
    try:
        # without standalone mode click returns the code of typer.Exit / ctx.exit instead of raising
        result = app(args=argv, standalone_mode=False)
    except RadsearchError as exc:
        console(stderr=True).print(f"[bold red]error:[/] {exc}", highlight=False)
        return 2
    except OSError as exc:
        if exc.errno not in DISK_ERRNOS:
            raise
        # a library writing on its own (tensorboard, a plot) on a full or read-only folder
        console(stderr=True).print(f"[bold red]error:[/] "
                                   f"{describe_output_error(exc.filename or '?', exc)}",
                                   highlight=False)
        return 2
    except typer.Exit as exc:
        return exc.exit_code
    except typer.Abort:
        console(stderr=True).print("aborted")
        return 130
    except Exception as exc:
        # click usage errors (unknown command, bad option) arrive here in non-standalone mode; typer
        # >= 0.20 vendors its own click, so recognise them by their interface, not their class
        if callable(getattr(exc, "show", None)) and isinstance(getattr(exc, "exit_code", None), int):
            exc.show()
            return exc.exit_code
        raise
    return result if isinstance(result, int) else 0


if __name__ == "__main__":
    sys.exit(main())
