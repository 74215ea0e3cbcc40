"""Ingest throughput on the real plain-text corpora: MB of input per second on one core.

    python bench/ingest.py [--repeat 3]

Reads every .txt under ../shared/corpora/{en,ru} in one process (ingest is single-threaded, so
this is the per-core figure) and reports the best of --repeat runs. Target: >= 20 MB/s per core.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import emit, need_corpora  # noqa: E402

from ltm.ingest import ingest_paths  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    corpora = need_corpora()
    files = sorted((corpora / "en").rglob("*.txt")) + sorted((corpora / "ru").rglob("*.txt"))
    size = sum(f.stat().st_size for f in files)
    best = float("inf")
    for _ in range(args.repeat):
        started = time.perf_counter()
        result = ingest_paths(files)
        best = min(best, time.perf_counter() - started)
    if result.errors:
        sys.exit(f"ingest reported problems: {[e.line() for e in result.errors[:3]]}")
    emit("ingest", "plain_text_mb_per_s_per_core", size / best / 1e6, "MB/s", target=20,
         files=len(files), documents=len(result.documents), input_mb=round(size / 1e6, 2))


if __name__ == "__main__":
    main()
