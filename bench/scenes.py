"""Scene throughput on the real corpora: MB of document text per second on one core.

    python bench/scenes.py [--repeat 2]

Ingests every .txt under ../shared/corpora/{en,ru} (not timed), then times the heuristic path
(segmentation + heuristic annotation, single process, so the figure is per core; target >= 5 MB/s)
and, separately, linking (TF-IDF + SVD vectors and FAISS search over all scenes).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import emit, need_corpora  # noqa: E402

from ltm.config import ScenesConfig  # noqa: E402
from ltm.ingest import ingest_paths  # noqa: E402
from ltm.scenes.lexicon import builtin_lexicon  # noqa: E402
from ltm.scenes.link import link  # noqa: E402
from ltm.scenes.pipeline import scenes_of  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    corpora = need_corpora()
    docs = ingest_paths(sorted((corpora / "en").rglob("*.txt")) + sorted((corpora / "ru").rglob("*.txt"))).documents
    size = sum(len(d.text.encode("utf-8")) for d in docs)
    config = ScenesConfig()
    for lang in ("ru", "en", "other"):
        builtin_lexicon(lang)  # loading the lexicons is a one-off, not throughput
    best, scenes = float("inf"), []
    for _ in range(args.repeat):
        started = time.perf_counter()
        scenes = [scene for doc in docs for scene in scenes_of(doc, config)]
        best = min(best, time.perf_counter() - started)
    emit("scenes", "heuristic_mb_per_s_per_core", size / best / 1e6, "MB/s", target=5,
         documents=len(docs), scenes=len(scenes), input_mb=round(size / 1e6, 2))
    started = time.perf_counter()
    link(scenes, config.link_k, config.link_min_score, cross_min_score=config.link_cross_min_score)
    seconds = time.perf_counter() - started
    emit("scenes", "linking_mb_per_s", size / seconds / 1e6, "MB/s", scenes=len(scenes), seconds=round(seconds, 1))


if __name__ == "__main__":
    main()
