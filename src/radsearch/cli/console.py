"""Consoles and log handlers of the CLI: no wrapping or padding when output is not a terminal.

Rich sizes output that goes to a pipe, a file or CI to ``$COLUMNS`` (else 80 columns), wraps text
and table cells to that width and pads log records to it. A warning then breaks mid-path and
``grep`` no longer finds it. Here a terminal keeps rich's layout; anything else gets one line per
message, tables as wide as their content, and plain ``level: message`` log lines.
"""

from __future__ import annotations

import logging
import sys

from rich.console import Console
from rich.logging import RichHandler

WIDE = 1 << 20  # wider than any line: rich never wraps to it, and tables do not expand


def console(stderr: bool = False) -> Console:
    """A console for stdout (or stderr): rich's layout in a terminal, unwrapped otherwise.

    Build it when printing, not at import: the stream (and whether it is a terminal) can change.
    """
    probe = Console(stderr=stderr, soft_wrap=True)
    if probe.is_terminal:
        return probe
    return Console(stderr=stderr, soft_wrap=True, width=WIDE)


class _OneLine(logging.Formatter):
    """``level: message`` with any line breaks of the message folded into spaces."""

    def format(self, record: logging.LogRecord) -> str:
        return f"{record.levelname.lower()}: " + " ".join(super().format(record).splitlines())


def log_handler() -> logging.Handler:
    """A handler writing to stderr: rich in a terminal, one plain line per record otherwise."""
    err = console(stderr=True)
    if err.is_terminal:
        return RichHandler(console=err, show_time=False, show_path=False)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_OneLine("%(message)s"))
    return handler
