"""The data stages past one machine: peak memory and throughput per core of `ltm pipeline`
(datatrove) as the corpus grows, against today's one-machine path (`ltm ingest` + `ltm scenes`).

    python bench/scale_pipeline.py [--sizes-mb 128 512 2100] [--tmp /tmp] [--tasks 8] [--one-machine-up-to-mb 600]
    python bench/scale_pipeline.py --compare-dedup-mb 64

A synthetic corpus (English- and Russian-like books of 0.5-1.5 MB: random words from syllables,
sentences and paragraphs, a few exact and near copies) is generated into --tmp at each size, never
into the repository, and removed after. Every measurement runs in a fresh process: files ->
documents -> MinHash dedup -> scenes, with datatrove's local executor, --tasks tasks one per core at
a time (its default; tasks are independent, so a cluster's throughput is this per-core figure times
its cores), and the one-machine path at every size up to --one-machine-up-to-mb (it holds the corpus
in memory, about 8 MB per MB of input: past that it would not fit beside the other work of a small
machine, and the skip is a line of the output). One BLAS thread per process on both. Figures: the
peak resident memory of the largest process (ru_maxrss of the process and its workers), MB of input
per CPU-second (all processes), and their ratio at each size both ran. Targets (issue 31): peak
memory flat across sizes; throughput per core within 20% of the one-machine path.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import emit, machine  # noqa: E402

# One BLAS thread per process on both paths: a figure per core, without idle threads spinning.
ONE_THREAD = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
SYLLABLES = {"en": "ba be bi bo bu da de di do du ka ke ki ko la le li lo ma me mi mo na ne ni no ra re ri ro sa se si so ta te ti to th "
                   "st an en in on er or ar al el il ol ou ea ie".split(),
             "ru": "ба бе би бо бу да де ди до ду ка ке ки ко ла ле ли ло ма ме ми мо на не ни но ра ре ри ро са се си со та те ти то "
                   "ст пр ов ен ан ой ый ая ие ож уч".split()}


def _vocabulary(lang: str, rng: np.random.Generator, size: int = 6000) -> np.ndarray:
    syllables = SYLLABLES[lang]
    lengths = rng.integers(1, 5, size)
    return np.array(sorted({"".join(rng.choice(syllables, n)) for n in lengths}))


def _book(vocab: list[str], weights: np.ndarray, rng: np.random.Generator, target: int) -> str:
    """Words drawn by Zipf's law (rank r with weight 1/(r + 2.7)), in sentences of 6-22 words, a
    tenth of them questions, and paragraphs of 2-8 sentences: independent books share few word
    5-grams, as real ones do. Drawn whole with numpy; only the sentence ends are touched one by one."""
    n = max(target // 7, 64)
    words = [vocab[i] for i in rng.choice(len(vocab), n, p=weights)]
    ends = np.cumsum(rng.integers(6, 23, n // 6 + 1))
    ends = ends[ends < n]
    questions = rng.random(len(ends)) < 0.1
    paragraph_ends = set(ends[np.cumsum(rng.integers(2, 9, len(ends))).clip(max=len(ends) - 1)].tolist()) if len(ends) else set()
    for end, question in zip(ends.tolist(), questions.tolist()):
        words[end - 1] += ("?" if question else ".") + ("\n\n" if end - 1 in paragraph_ends or end in paragraph_ends else "")
    return " ".join(words).replace("\n\n ", "\n\n") + ".\n"


def make_corpus(folder: Path, megabytes: float, seed: int = 0) -> int:
    """Books of 0.5-1.5 MB until `megabytes`; one book in fifty is an exact or near copy of an
    earlier one. Returns the bytes written."""
    rng = np.random.default_rng(seed)
    vocab = {lang: _vocabulary(lang, rng).tolist() for lang in SYLLABLES}
    weights = {lang: 1 / (np.arange(len(words)) + 2.7) for lang, words in vocab.items()}
    weights = {lang: w / w.sum() for lang, w in weights.items()}
    folder.mkdir(parents=True, exist_ok=True)
    written, books, n = 0, [], 0
    while written < megabytes * 1e6:
        if books and n % 50 == 49:
            text = books[int(rng.integers(len(books)))]
            text = text if n % 100 == 99 else text.replace(".", ";", 3)
        else:
            lang = "en" if n % 2 else "ru"
            text = _book(vocab[lang], weights[lang], rng, int(rng.integers(500_000, 1_500_000)))
            books.append(text) if len(books) < 20 else books.__setitem__(int(rng.integers(20)), text)
        data = text.encode("utf-8")
        (folder / f"book_{n:05d}.txt").write_bytes(data)
        written, n = written + len(data), n + 1
    return written


def _usage() -> tuple[float, float]:
    """(CPU seconds, peak resident MB) of this process and the children it waited for."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime, max(own.ru_maxrss, children.ru_maxrss) / 1024


def run_one(path: str, corpus: Path, out: Path, tasks: int) -> dict:
    """One measurement, in this (fresh) process."""
    from ltm.config import ScenesConfig

    wall = time.perf_counter()
    if path == "datatrove":
        from ltm.scale import recipes

        chain = recipes.executors(recipes.stages(corpus, out, tasks, ScenesConfig(), "minhash"), out, "local")
        for executor in chain:
            executor.start_method = "fork"  # workers are then this process's children: their CPU time and memory are counted
        chain[-1].run()
        scenes = sum(sum(1 for _ in p.open("rb")) for p in sorted((out / "scenes").glob("*.jsonl")))
    else:
        from ltm import stages
        from ltm.config import RunConfig

        stages.ingest([corpus], out / "docs.jsonl")
        scenes = stages.scenes(out / "docs.jsonl", out / "scenes.jsonl", RunConfig())
    cpu, peak = _usage()
    return {"cpu_s": cpu, "wall_s": time.perf_counter() - wall, "peak_mb": peak, "scenes": scenes}


def compare_dedup(corpus: Path) -> None:
    """The signature step of near-duplicate search alone, per CPU-second, on the same texts: ltm's
    MinHash (numpy; long documents hash an eighth of their shingles), datatrove's signature step
    (every shingle hashed in Python) and that step over ltm's shingles (LtmMinhashSignature, what
    `ltm pipeline` runs)."""
    from datatrove.pipeline.dedup.minhash import MinhashConfig, MinhashDedupSignature

    from ltm.ingest.dedup import DuplicateFinder
    from ltm.scale.steps import LtmMinhashSignature, WhitespaceWords

    texts = [p.read_text(encoding="utf-8") for p in sorted(corpus.glob("*.txt"))]
    megabytes = sum(len(t.encode("utf-8")) for t in texts) / 1e6
    finder = DuplicateFinder()
    signers = {"datatrove_minhash": MinhashDedupSignature(str(corpus.parent / "unused"), MinhashConfig(), language=WhitespaceWords()),
               "datatrove_minhash_ltm_shingles": LtmMinhashSignature(str(corpus.parent / "unused"), MinhashConfig())}
    runs = {"ltm_minhash": lambda text, n: finder.check(str(n), str(n), text)}
    runs |= {name: (lambda text, n, s=signer: s.get_signature(s.get_shingles(text))) for name, signer in signers.items()}
    for name, run in runs.items():
        cpu = time.process_time()
        for n, text in enumerate(texts):
            run(text, n)
        emit("scale_pipeline", f"{name}_mb_per_cpu_s", megabytes / (time.process_time() - cpu), "MB/s per core", input_mb=round(megabytes, 1))


def measure(path: str, corpus: Path, out: Path, tasks: int) -> dict:
    shutil.rmtree(out, ignore_errors=True)
    command = [sys.executable, __file__, "--one", path, "--corpus", str(corpus), "--out", str(out), "--tasks", str(tasks)]
    done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, **ONE_THREAD})
    if done.returncode:
        sys.exit(f"{path} failed:\n{done.stderr[-3000:]}")
    shutil.rmtree(out, ignore_errors=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes-mb", type=float, nargs="+", default=[128, 512, 2100])
    parser.add_argument("--one-machine-up-to-mb", type=float, default=600,
                        help="run the one-machine path only up to this size (it holds the corpus in memory)")
    parser.add_argument("--tmp", type=Path, default=Path("/tmp"))
    parser.add_argument("--tasks", type=int, default=8)
    parser.add_argument("--one", choices=["datatrove", "one_machine"])
    parser.add_argument("--corpus", type=Path)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--compare-dedup-mb", type=float, help="only time the two near-duplicate searches on a corpus of this size")
    args = parser.parse_args()
    if args.compare_dedup_mb:
        corpus = args.tmp / "ltm-dedup-bench"
        shutil.rmtree(corpus, ignore_errors=True)
        try:
            make_corpus(corpus, args.compare_dedup_mb, seed=1)
            compare_dedup(corpus)
        finally:
            shutil.rmtree(corpus, ignore_errors=True)
        return
    if args.one:
        print(json.dumps(run_one(args.one, args.corpus, args.out, args.tasks)))
        return

    work = args.tmp / "ltm-scale-bench"
    shutil.rmtree(work, ignore_errors=True)
    figures = {}
    try:
        for size in args.sizes_mb:  # in the order given
            corpus = work / "corpus"
            shutil.rmtree(corpus, ignore_errors=True)
            megabytes = make_corpus(corpus, size) / 1e6
            paths = ["datatrove", "one_machine"] if size <= args.one_machine_up_to_mb else ["datatrove"]
            if size > args.one_machine_up_to_mb:
                print(json.dumps({"bench": "scale_pipeline", "metric": f"one_machine_at_{megabytes:.0f}mb", "value": None, "unit": None,
                                  "target": None, "machine": machine(), "input_mb": round(megabytes, 1),
                                  "skipped": f"not run past --one-machine-up-to-mb {args.one_machine_up_to_mb:g}: it holds the "
                                             "corpus in memory"}), flush=True)
            for path in paths:
                got = measure(path, corpus, work / "out", args.tasks)
                extra = {"input_mb": round(megabytes, 1), "wall_s": round(got["wall_s"], 1), "cpu_s": round(got["cpu_s"], 1),
                         "scenes": got["scenes"], "tasks": args.tasks if path == "datatrove" else 1,
                         "load_1min": round(os.getloadavg()[0], 1)}  # the machine's load as it ended: CPU time grows when shared
                figures[path, megabytes] = got["peak_mb"], megabytes / got["cpu_s"]
                emit("scale_pipeline", f"{path}_peak_rss_mb_at_{megabytes:.0f}mb", got["peak_mb"], "MB", **extra)
                emit("scale_pipeline", f"{path}_mb_per_cpu_s_at_{megabytes:.0f}mb", megabytes / got["cpu_s"], "MB/s per core", **extra)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    sizes = sorted(mb for p, mb in figures if p == "datatrove")
    emit("scale_pipeline", "datatrove_peak_rss_largest_over_smallest", figures["datatrove", sizes[-1]][0] / figures["datatrove", sizes[0]][0],
         "ratio", target=1.2, sizes_mb=[round(mb) for mb in sizes])
    for mb in sorted(mb for p, mb in figures if p == "one_machine"):
        emit("scale_pipeline", f"datatrove_over_one_machine_mb_per_cpu_s_at_{mb:.0f}mb",
             figures["datatrove", mb][1] / figures["one_machine", mb][1], "ratio", target=0.8, input_mb=round(mb, 1))


if __name__ == "__main__":
    main()
