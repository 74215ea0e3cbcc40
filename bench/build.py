"""Build throughput on the real corpora: MB of text per CPU-second, from scenes to shards.

    python bench/build.py

Ingests and cuts ../shared/corpora/{en,ru} into scenes once (not timed), then builds the dataset
three times at one budget: `unique` training its tokenizer, `unique` reusing that tokenizer (as a
study does across its regimes), and `spiral: 10` (five built-in lenses, two passes each) reusing
it. Tokenizer training and encoding use several threads, so besides wall-clock MB/s the script
reports MB per CPU-second (user + system time of the process), the per-core figure. Target
>= 10 MB/s per core for the plain regimes.
"""

from __future__ import annotations

import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import emit, need_corpora  # noqa: E402

from ltm.dataset import SceneTable, build_dataset  # noqa: E402
from ltm.config import BuildConfig, LensStep, ScenesConfig  # noqa: E402
from ltm.ingest import ingest_paths  # noqa: E402
from ltm.io import write_jsonl  # noqa: E402
from ltm.scenes import make_scenes  # noqa: E402


def _cpu_seconds() -> float:
    """User + system time of this process and of the tokenizing processes it waited for."""
    return sum(u.ru_utime + u.ru_stime for u in (resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)))


def main() -> None:
    corpora = need_corpora()
    docs = ingest_paths(sorted((corpora / "en").rglob("*.txt")) + sorted((corpora / "ru").rglob("*.txt"))).documents
    scenes = make_scenes(docs, ScenesConfig(link_k=0), [])
    size = sum(len(s.text.encode("utf-8")) for s in scenes)
    lenses = [LensStep(passes=2, lens=lens) for lens in ("plain", "scene", "questions", "critic", "child")]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "scenes.jsonl"
        write_jsonl(path, scenes)
        budget, tokenizer = None, None
        # First with a tokenizer trained on the corpus; then, as in a study (one tokenizer for every
        # regime), reusing it: that is the figure the target is about.
        for name, regime in (("unique_with_tokenizer_training", "unique"), ("unique", "unique"), ("spiral_10", {"spiral": 10})):
            config = BuildConfig(vocab_size=8192, regime=regime, lenses=lenses, budget_tokens=budget, tokenizer=tokenizer)
            wall, cpu = time.perf_counter(), _cpu_seconds()
            manifest = build_dataset(SceneTable.from_jsonl(path), config, 1234, Path(tmp) / name)
            wall, cpu = time.perf_counter() - wall, _cpu_seconds() - cpu
            budget = budget or manifest.budget_tokens  # every build gets the first one's budget
            tokenizer = tokenizer or str(Path(tmp) / name / "tokenizer")
            extra = {"train_tokens": manifest.split_tokens("train"), "input_mb": round(size / 1e6, 2), "wall_s": round(wall, 1)}
            emit("build", f"{name}_mb_per_cpu_s", size / cpu / 1e6, "MB/s per core", target=10 if name == "unique" else None, **extra)
            emit("build", f"{name}_mb_per_s_wall", size / wall / 1e6, "MB/s", **extra)

if __name__ == "__main__":
    main()
