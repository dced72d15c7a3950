"""`radsearch` commands of this area (registered by radsearch.cli.main)."""

import typer


def register(app: typer.Typer) -> None:
    """Add this module's commands to the root app."""
