"""`radsearch serve` under tracemalloc, for the soak benchmark's allocation-site diff.

    python -m benchmarks._traced_serve SNAPSHOT_DIR serve INDEX --run RUN ...

Starts tracing (25 frames) before anything is imported, then runs the radsearch CLI with the
remaining arguments. ``kill -USR1 <pid>`` writes ``SNAPSHOT_DIR/<n>.snapshot`` (a
``tracemalloc.Snapshot.dump``) from the main thread; the benchmark diffs the first and the last.
Benchmark-only: the service itself has no such hook.
"""

from __future__ import annotations

import tracemalloc

tracemalloc.start(25)

import signal  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402


def main() -> None:
    folder = Path(sys.argv[1])
    folder.mkdir(parents=True, exist_ok=True)
    taken = []

    def dump(signum, frame):
        path = folder / f"{len(taken)}.snapshot"
        tracemalloc.take_snapshot().dump(str(path.with_suffix(".tmp")))
        path.with_suffix(".tmp").rename(path)       # the benchmark waits for the final name
        taken.append(path)

    signal.signal(signal.SIGUSR1, dump)
    from radsearch.cli.main import main as cli

    sys.exit(cli(sys.argv[2:]))


if __name__ == "__main__":
    main()
