"""Record a benchmark's latest output in docs/benchmarks.md, one marked section per benchmark.

Each benchmark owns the text between ``<!-- BEGIN name -->`` and ``<!-- END name -->``; other sections
are kept. The file is locked while it is rewritten (several benchmarks may finish at once) and
replaced atomically.
"""

from __future__ import annotations

import datetime as _dt
import fcntl
import platform
import re
import sys
from pathlib import Path

from radsearch.io import write_text

DOC = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"
HEADER = """# Benchmarks

Each section is the latest output of one script in `benchmarks/`, written by the script itself.
Timings come from a shared 2-core machine, so every figure is printed beside a reference measured
in the same run, and the ratio is what to compare across runs.
"""


def machine_line() -> str:
    import torch

    return (f"{platform.processor() or platform.machine()}, Python {sys.version.split()[0]}, "
            f"torch {torch.__version__}, {torch.get_num_threads()} intra-op thread(s)")


def record(name: str, title: str, command: str, body: str) -> Path:
    """Replace (or append) the section ``name`` of docs/benchmarks.md with ``body``."""
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    section = (f"<!-- BEGIN {name} -->\n## {title}\n\nCommand: `{command}` — run {stamp}\n\n"
               f"{body.rstrip()}\n<!-- END {name} -->")
    DOC.parent.mkdir(parents=True, exist_ok=True)
    lock_path = DOC.with_suffix(".lock")
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        text = DOC.read_text(encoding="utf-8") if DOC.exists() else HEADER
        pattern = re.compile(rf"<!-- BEGIN {re.escape(name)} -->.*?<!-- END {re.escape(name)} -->",
                             re.S)
        if pattern.search(text):
            text = pattern.sub(lambda _: section, text)
        else:
            text = text.rstrip() + "\n\n" + section + "\n"
        write_text(DOC, text)
    return DOC
