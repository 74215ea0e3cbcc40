"""How long a light command takes from start to end: `ltm ingest` of a two-paragraph file, in a
fresh process, so the figure is mostly imports (ingest loads neither torch, transformers nor scipy).

    python bench/cli_start.py [--repeat 5]

Reports the median wall time of --repeat runs, and the machine's load average while they ran (other
work on a shared machine slows every import). Target: under 1 s.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import emit  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        text = Path(folder) / "tiny.txt"
        text.write_text("A tiny text.\n\nIt has two paragraphs, nothing more.\n", encoding="utf-8")
        times = []
        for _ in range(args.repeat):
            started = time.perf_counter()
            subprocess.run([sys.executable, "-m", "ltm.cli", "ingest", str(text), "-o", str(Path(folder) / "docs.jsonl")],
                           check=True, capture_output=True)
            times.append(time.perf_counter() - started)
    emit("cli_start", "ingest_tiny_file_wall_s", statistics.median(times), "s", target=1.0, repeat=args.repeat,
         load_average=round(os.getloadavg()[0], 2))


if __name__ == "__main__":
    main()
