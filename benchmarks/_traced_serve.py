"""`radsearch serve` with a tracemalloc hook, for the soak benchmark's allocation-site diff.

    python -m benchmarks._traced_serve SNAPSHOT_DIR serve INDEX --run RUN ...

Runs the radsearch CLI with the remaining arguments. The first ``kill -USR1 <pid>`` starts
tracemalloc (so start-up runs at full speed and only what is allocated afterwards is traced) and
writes ``SNAPSHOT_DIR/0.snapshot``; each later one writes the next number. The benchmark diffs
the first and the last: what was allocated during the soak and is still alive at its end.
Benchmark-only: the service itself has no such hook.
"""

from __future__ import annotations

import signal
import sys
import tracemalloc
from pathlib import Path


def main() -> None:
    folder = Path(sys.argv[1])
    folder.mkdir(parents=True, exist_ok=True)
    taken = []

    def dump(signum, frame):
        if not tracemalloc.is_tracing():
            tracemalloc.start(1)           # the allocating Python line is enough for 'lineno'
        path = folder / f"{len(taken)}.snapshot"
        tracemalloc.take_snapshot().dump(str(path.with_suffix(".tmp")))
        path.with_suffix(".tmp").rename(path)       # the benchmark waits for the final name
        taken.append(path)

    signal.signal(signal.SIGUSR1, dump)
    from radsearch.cli.main import main as cli

    sys.exit(cli(sys.argv[2:]))


if __name__ == "__main__":
    main()
